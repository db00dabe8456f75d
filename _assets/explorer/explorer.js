/* The book's sampling explorer, live in the reader's browser (chapters 1 and 8).

   The HTML page has no Python kernel, so this script runs the book's toy-char model itself: the
   ONNX export (tools/export_onnx.py, registered by _static/models/NAME.js as window.lmModels[NAME])
   through onnxruntime-web's WebAssembly backend (window.ort, with window.lmOrtRuntime holding its
   wasm), then applies the sampling rules of lmcore.decoding.sampling.filter_probs to the logits.

   Mount point: <div class="lm-explorer" data-model="toy-char" data-prompt="..." data-grammar="toy"
   data-mode="sampling|generate">. "sampling" shows the temperature, top-k, top-p and min-p
   controls of lmcore.widgets.SamplingExplorer; "generate" (chapter 1) only the temperature.
   Optional: data-samples (continuations, 8), data-max-new-tokens (60), data-top-n (bars, 15), the
   widget's defaults. Its colours are in explorer.css.

   The rules compute in float64 from the model's float32 logits, lmcore in float32: probabilities
   agree within about 1e-7. Where a top-p boundary runs through exactly tied tokens, the page keeps
   the lower ids, lmcore whichever torch.sort puts first (the same count and the same mass).

   Nothing is fetched or imported from the page's folder: a book opened from disk (file://) may not
   do that. The model and the runtime come as classic scripts holding gzip + base64 bytes, which
   are decompressed and checked against their sha256 before use.

   window.lmExplorer exposes the pure functions (filterProbs, softmaxT, entropy, isValidToy, ...)
   for the tests (tests/test_web_explorer.py), and `instances`, the mounted explorers. */
(function () {
  "use strict";

  const LOG_FLOOR = 1e-6;               // as lmcore.widgets.LOG_FLOOR: log bars start at p = 1e-6
  const LABELS = { " ": "␣", "\n": "⏎", "\t": "⇥" };

  // ---- the sampling rules: lmcore.decoding.sampling.filter_probs, in float64 ----------------------

  /** softmax(logits / T); T = 0 puts all mass on the first arg-max. The maximum is subtracted
      before dividing, so a tiny T gives the T -> 0 limit (mass shared by exact ties), as lmcore. */
  function softmaxT(logits, T) {
    const n = logits.length, out = new Float64Array(n);
    let peak = -Infinity, arg = 0;
    for (let i = 0; i < n; i++) if (logits[i] > peak) { peak = logits[i]; arg = i; }
    if (T === 0) { out[arg] = 1; return out; }
    let total = 0;
    for (let i = 0; i < n; i++) {
      out[i] = logits[i] === peak ? 1 : Math.exp((logits[i] - peak) / T);
      total += out[i];
    }
    for (let i = 0; i < n; i++) out[i] /= total;
    return out;
  }

  function renormalise(probs, keep) {
    const out = new Float64Array(probs.length);
    let total = 0;
    for (let i = 0; i < probs.length; i++) if (keep[i]) { out[i] = probs[i]; total += probs[i]; }
    for (let i = 0; i < probs.length; i++) out[i] /= total;
    return out;
  }

  /** Indices by probability, largest first; ties in index order. */
  function ranking(probs) {
    return Array.from(probs.keys()).sort((a, b) => probs[b] - probs[a] || a - b);
  }

  function topK(probs, k) {
    const sorted = Array.from(probs).sort((a, b) => b - a);
    const kth = sorted[Math.min(k, probs.length) - 1];      // ties with the k-th are kept too
    return renormalise(probs, Array.from(probs, p => p >= kth));
  }

  function topP(probs, p) {
    const keep = new Array(probs.length).fill(false);
    let before = 0;                                          // mass of the tokens ranked above
    for (const i of ranking(probs)) {
      if (before < p) keep[i] = true;                        // rank 0 has 0 before it: always kept
      before += probs[i];
    }
    return renormalise(probs, keep);
  }

  function minP(probs, m) {
    const peak = Math.max(...probs);
    return renormalise(probs, Array.from(probs, q => q >= m * peak));
  }

  function applyFilters(probs, s) {
    if (s.top_k) probs = topK(probs, s.top_k);
    if (s.top_p != null && s.top_p < 1) probs = topP(probs, s.top_p);
    if (s.min_p) probs = minP(probs, s.min_p);
    return probs;
  }

  /** lmcore's filter_probs: settings {temperature, top_k, top_p, min_p, filter_order}, where
      top_k 0 / null, top_p 1 / null and min_p 0 / null switch a filter off (sampler_settings). */
  function filterProbs(logits, s) {
    const T = s.temperature == null ? 1 : s.temperature;
    if (s.filter_order === "temperature-last") {
      const kept = applyFilters(softmaxT(logits, 1), s);
      return softmaxT(Array.from(logits, (z, i) => (kept[i] > 0 ? z : -Infinity)), T);
    }
    return applyFilters(softmaxT(logits, T), s);
  }

  /** Entropy in nats (never below 0, as lmcore.widgets). */
  function entropy(p) {
    let h = 0;
    for (const q of p) if (q > 0) h -= q * Math.log(q);
    return Math.max(0, h);
  }

  /** The first index whose cumulative probability exceeds u * total (sample_next's rule). */
  function drawIndex(probs, u) {
    let total = 0;
    for (const q of probs) total += q;
    let c = 0;
    for (let i = 0; i < probs.length; i++) { c += probs[i]; if (c > u * total) return i; }
    for (let i = probs.length - 1; i >= 0; i--) if (probs[i] > 0) return i;
    return 0;
  }

  /** A small seeded generator (mulberry32): the same seed gives the same continuations. */
  function rng(seed) {
    let a = seed >>> 0;
    return function () {
      a = (a + 0x6D2B79F5) >>> 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }

  // ---- the toy language's grammar: lmcore.data.ToyLanguage.is_valid ------------------------------

  function isValidToy(text, g) {
    if (typeof text !== "string" || !text.endsWith("\n")) return false;
    return text.slice(0, -1).split("\n").every(story => storyValid(story, g));
  }

  function storyValid(story, g) {
    if (!story.endsWith(".")) return false;
    const sentences = story.slice(0, -1).split(". ").map(s => s.split(" "));
    const name = sentences[0][0];
    if (sentences.length > g.max_sentences || !Object.prototype.hasOwnProperty.call(g.names, name)) return false;
    return sentences.every((words, k) => sentenceValid(words, k === 0, g.names[name], g));
  }

  /** One sentence (its words): the first after its name, a later one with the story's pronoun or
      a subject whose number the verbs (of a relative clause too) agree with. */
  function sentenceValid(words, first, pronoun, g) {
    let i = 0;
    const take = allowed => (i < words.length && allowed.includes(words[i]) ? words[i++] : null);
    const verb = plural => take(plural ? g.verbs : g.verbs.map(v => v + "s")) !== null;
    const np = () => {                                   // "the" [adjective] noun: its number, or null
      if (take(["the"]) === null) return null;
      take(g.adjectives);
      const noun = take([...g.nouns, ...g.nouns.map(n => n + "s")]);
      return noun === null ? null : { plural: !g.nouns.includes(noun) };
    };
    if (first || words[0] === "he" || words[0] === "she") {
      if (!first && words[0] !== pronoun) return false;
      i = 1;                                             // the name (checked by storyValid) or the pronoun
      if (!verb(false) || !np()) return false;
    } else {
      const subject = np();
      if (!subject) return false;
      if (words[i] === "that" && (++i, !verb(subject.plural) || !np())) return false;
      if (!verb(subject.plural) || !np()) return false;
    }
    return i === words.length;
  }

  // ---- bytes: base64, gzip, sha256 --------------------------------------------------------------

  function fromBase64(text) {
    const raw = atob(text), out = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
    return out;
  }

  async function gunzip(bytes) {
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  }

  async function sha256(bytes) {
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
    return Array.from(digest, b => b.toString(16).padStart(2, "0")).join("");
  }

  /** Decompress a gzip + base64 payload and check its sha256; a mismatch is an error naming `what`. */
  async function unpack(payload, expected, what) {
    const again = "; rebuild the book (make book)";
    let bytes;
    try {
      bytes = await gunzip(fromBase64(payload));
    } catch (e) {
      throw new Error(`${what} is corrupt: it does not decompress (${e.message})${again}`);
    }
    const got = await sha256(bytes);
    if (got !== expected) {
      throw new Error(`${what} is corrupt or stale: sha256 ${got.slice(0, 12)}… instead of ${expected.slice(0, 12)}…${again}`);
    }
    return bytes;
  }

  let runtime = null;        // one onnxruntime-web initialisation per page
  function initRuntime() {
    if (runtime) return runtime;
    runtime = (async () => {
      if (!window.ort || !window.lmOrtRuntime) throw new Error("onnxruntime-web is not loaded on this page");
      const rt = window.lmOrtRuntime;
      const wasm = await unpack(rt.wasm_gzip_base64, rt.wasm_sha256, "onnxruntime-web's wasm");
      // one thread and no worker: no SharedArrayBuffer (the book sends no isolation headers)
      ort.env.wasm.numThreads = 1;
      ort.env.wasm.proxy = false;
      ort.env.wasm.wasmBinary = wasm;
      ort.env.wasm.wasmPaths = { mjs: URL.createObjectURL(new Blob([rt.glue], { type: "text/javascript" })) };
      return ort;
    })();
    return runtime;
  }

  const models = {};
  /** {meta, session, run(ids rows) -> Float32Array rows of next-token logits}, once per model. */
  function loadModel(name) {
    if (models[name]) return models[name];
    models[name] = (async () => {
      const entry = (window.lmModels || {})[name];
      if (!entry) throw new Error(`model ${name} is not loaded on this page (_static/models/${name}.js)`);
      const ortLib = await initRuntime();
      const bytes = await unpack(entry.onnx_gzip_base64, entry.meta.sha256, `the model file ${name}`);
      const session = await ortLib.InferenceSession.create(bytes, { executionProviders: ["wasm"] });
      let queue = Promise.resolve();
      const V = entry.meta.vocab_size;
      const run = rows => {
        // onnxruntime-web runs one inference at a time per session: calls wait their turn
        const job = queue.then(async () => {
          const B = rows.length, T = rows[0].length, flat = new BigInt64Array(B * T);
          rows.forEach((r, b) => r.forEach((id, t) => { flat[b * T + t] = BigInt(id); }));
          const out = await session.run({ ids: new ortLib.Tensor("int64", flat, [B, T]) });
          const data = out.logits.data;
          return rows.map((_, b) => data.slice(b * V, (b + 1) * V));
        });
        queue = job.catch(() => {});
        return job;
      };
      return { meta: entry.meta, session, run };
    })();
    return models[name];
  }

  // ---- the page component --------------------------------------------------------------------------

  const fmt = (x, digits = 3) => {
    if (x === -Infinity) return "-∞";
    const t = x.toFixed(digits);
    return Number(t) === 0 ? t.replace("-", "") : t;
  };
  const label = c => Array.from(c, ch => LABELS[ch] || ch).join("") || "∅";
  const oneLine = s => s.replace(/\n/g, "⏎");
  const el = (tag, attrs = {}, ...children) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "text") e.textContent = v; else e.setAttribute(k, v);
    }
    children.forEach(c => e.append(c));
    return e;
  };

  function slider(name, text, min, max, step, value) {
    const input = el("input", { type: "range", min, max, step, value, name, "aria-label": text });
    const shown = el("output", { text: String(value) });
    input.addEventListener("input", () => { shown.textContent = input.value; });
    return { input, row: el("label", { class: "lm-ex-control" }, el("span", { text }), input, shown) };
  }

  class Explorer {
    constructor(root) {
      this.root = root;
      this.mode = root.dataset.mode || "sampling";
      this.nSamples = Number(root.dataset.samples || 8);
      this.maxNew = Number(root.dataset.maxNewTokens || 60);
      this.topN = Number(root.dataset.topN || 15);
      this.grammar = root.dataset.grammar ? (window.lmGrammars || {})[root.dataset.grammar] : null;
      this.job = 0;
      this.build(root.dataset.prompt == null ? "\n" : root.dataset.prompt);
      this.start = performance.now();
      this.ready = loadModel(root.dataset.model || "toy-char").then(m => {
        this.model = m;
        this.controls.topK.input.max = String(m.meta.vocab_size);
        return this.refresh(true);
      }).catch(e => this.fail(e));
    }

    build(prompt) {
      const r = this.root;
      r.hidden = false;
      r.classList.add("lm-ex");
      this.prompt = el("textarea", { rows: 2, "aria-label": "prompt", spellcheck: "false" });
      this.prompt.value = prompt;
      const c = this.controls = {
        temperature: slider("temperature", "temperature", 0, 3, 0.05, 1),
        topK: slider("top_k", "top-k (0 = off)", 0, 26, 1, 0),
        topP: slider("top_p", "top-p (1 = off)", 0.05, 1, 0.05, 1),
        minP: slider("min_p", "min-p (0 = off)", 0, 1, 0.01, 0),
      };
      this.scale = el("select", { "aria-label": "scale" }, el("option", { value: "linear", text: "probability" }),
                      el("option", { value: "log", text: "log probability" }));
      this.seed = el("input", { type: "number", min: 0, value: 0, "aria-label": "seed", class: "lm-ex-seed" });
      const sampling = this.mode === "sampling";
      const controls = sampling ? [c.temperature.row, c.topK.row, c.topP.row, c.minP.row] : [c.temperature.row];
      this.status = el("div", { class: "lm-ex-status", text: "loading the model and onnxruntime-web …" });
      this.summary = el("div", { class: "lm-ex-summary" });
      this.chart = el("table", { class: "lm-ex-bars" });
      this.samples = el("div", { class: "lm-ex-samples" });
      r.replaceChildren(
        el("label", { class: "lm-ex-prompt" }, el("span", { text: "prompt" }), this.prompt),
        el("div", { class: "lm-ex-controls" }, ...controls),
        el("div", { class: "lm-ex-controls" }, el("label", { class: "lm-ex-control" }, el("span", { text: "scale" }), this.scale),
           el("label", { class: "lm-ex-control" }, el("span", { text: "seed" }), this.seed)),
        this.summary, this.chart, this.samples, this.status);
      let timer = null;
      this.prompt.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(() => this.refresh(true), 150); });
      for (const s of Object.values(c)) {
        s.input.addEventListener("input", () => this.refresh(false, false));     // bars follow the drag
        s.input.addEventListener("change", () => this.refresh(false));           // samples on release
      }
      this.scale.addEventListener("change", () => this.draw());
      this.seed.addEventListener("change", () => this.refresh(false));
    }

    settings() {
      const v = s => Number(s.input.value);
      const c = this.controls, sampling = this.mode === "sampling";
      return { temperature: v(c.temperature), top_k: sampling && v(c.topK) ? v(c.topK) : null,
               top_p: sampling && v(c.topP) !== 1 ? v(c.topP) : null, min_p: sampling && v(c.minP) ? v(c.minP) : null };
    }

    encode(text) {
      const index = new Map(this.model.meta.vocab.map((ch, i) => [ch, i]));
      const bad = [...new Set(Array.from(text).filter(ch => !index.has(ch)))];
      if (!text) throw new Error("the prompt is empty: type at least one character");
      if (bad.length) throw new Error(`the model does not know ${bad.map(ch => JSON.stringify(ch)).join(", ")}; ` +
                                      "the toy language uses lower-case letters, space, '.' and newline");
      return Array.from(text, ch => index.get(ch)).slice(-this.model.meta.context_length);
    }

    /** Recompute: the logits when the prompt changed, the distributions, and (unless
        `samples` is false) the continuations. Stale jobs stop when a newer one starts. */
    async refresh(promptChanged, samples = true) {
      if (!this.model) return;
      const job = ++this.job;
      try {
        if (promptChanged || !this.logits) {
          const ids = this.encode(this.prompt.value);
          const [logits] = await this.model.run([ids]);
          if (job !== this.job) return;
          this.ids = ids;
          this.logits = Float64Array.from(logits);
          this.shownPrompt = this.prompt.value;
        }
        const s = this.settings();
        this.result = { prompt: this.shownPrompt, settings: s, probs: softmaxT(this.logits, 1),
                        tempered: softmaxT(this.logits, s.temperature), filtered: filterProbs(this.logits, s) };
        this.draw();
        if (this.msFirst == null) this.msFirst = performance.now() - this.start;
        this.root.dataset.state = "distribution";
        if (!samples) return;
        const t0 = performance.now();
        // the texts so far are drawn every 10 characters: a batch of 8 takes seconds on a slow machine
        const texts = await this.continuations(this.ids, s, Number(this.seed.value) || 0, job,
                                               { onStep: (step, partial) => step % 10 === 9 && this.drawSamples(partial) });
        if (texts === null) return;
        this.msSamples = performance.now() - t0;
        this.texts = texts;
        this.drawSamples(texts);
        this.status.textContent = `first distribution after ${Math.round(this.msFirst)} ms; ` +
          `${texts.length} continuations in ${Math.round(this.msSamples)} ms (onnxruntime-web, in this browser)`;
        this.root.dataset.state = "ready";
      } catch (e) {
        if (job === this.job) this.fail(e);
      }
    }

    fail(e) {
      this.summary.replaceChildren(el("b", { class: "lm-ex-error", text: String(e.message || e) }));
      this.root.dataset.state = "error";
      this.root.dataset.error = String(e.message || e);
    }

    /** `n` continuations of up to `maxNew` characters after token ids `ids`, sampled in one batch
        with settings `s` from a generator seeded with `seed`, each stopping after its first newline
        (unless `stop` is false); `onStep(step, texts so far)` after each character. Returns the texts,
        or null when a newer job than `job` started (null `job`: never stale). */
    async continuations(ids, s, seed, job, { n = this.nSamples, maxNew = this.maxNew, stop = true, onStep = null } = {}) {
      const random = rng(seed), nl = this.model.meta.vocab.indexOf("\n"), L = this.model.meta.context_length;
      const rows = Array.from({ length: n }, () => ids.slice()), out = rows.map(() => []);
      let active = rows.map((_, i) => i);
      for (let step = 0; step < maxNew && active.length; step++) {
        const logits = await this.model.run(active.map(i => rows[i].slice(-L)));
        if (job != null && job !== this.job) return null;
        active = active.filter((i, b) => {
          const token = drawIndex(filterProbs(logits[b], s), random());
          rows[i].push(token);
          out[i].push(token);
          return !(stop && token === nl);
        });
        if (onStep) onStep(step, this.decode(out));
      }
      return this.decode(out);
    }

    decode(rows) {
      return rows.map(t => t.map(i => this.model.meta.vocab[i]).join(""));
    }

    draw() {
      const r = this.result;
      if (!r) return;
      const log = this.scale.value === "log";
      const kept = r.filtered.filter(p => p > 0).length;
      const V = r.filtered.length;
      this.summary.textContent = `kept ${kept} of ${V} tokens · entropy ${fmt(entropy(r.tempered))} nats → ` +
        `${fmt(entropy(r.filtered))} after filtering`;
      this.summary.dataset.kept = kept;
      this.summary.dataset.entropy = entropy(r.tempered);
      this.summary.dataset.entropyFiltered = entropy(r.filtered);
      const length = p => (log ? (p <= LOG_FLOOR ? 0 : 1 - Math.log(p) / Math.log(LOG_FLOOR)) : p);
      const head = el("tr", {}, el("th", { text: "token" }),
        el("th", { text: "dark: model (T = 1) · grey: after temperature · blue: sampled from" }),
        el("th", { text: log ? `ln p (nats), bars from p = ${LOG_FLOOR} to 1` : "p" }));
      const rows = ranking(r.tempered).slice(0, this.topN).map(i => {
        const bars = el("td", { class: "lm-ex-bar" });
        for (const [cls, p] of [["model", r.probs[i]], ["tempered", r.tempered[i]], ["filtered", r.filtered[i]]]) {
          bars.append(el("div", { class: `lm-ex-${cls}`, style: `width:${(100 * length(p)).toFixed(2)}%` }));
        }
        const shown = [r.tempered[i], r.filtered[i]].map(p => fmt(log ? (p > 0 ? Math.log(p) : -Infinity) : p)).join(" → ");
        return el("tr", { "data-token": i, "data-kept": r.filtered[i] > 0 ? 1 : 0, "data-p-model": r.probs[i],
                          "data-p-tempered": r.tempered[i], "data-p-filtered": r.filtered[i] },
          el("td", { class: r.filtered[i] > 0 ? "lm-ex-label" : "lm-ex-label lm-ex-removed",
                     text: label(this.model.meta.vocab[i]) }), bars, el("td", { class: "lm-ex-value", text: shown }));
      });
      this.chart.replaceChildren(head, ...rows);
    }

    drawSamples(texts) {
      const story = this.shownPrompt.split("\n").pop(), tail = oneLine(this.shownPrompt.slice(-20));
      const lines = texts.map(t => {
        const line = el("div", { class: "lm-ex-sample" });
        if (this.grammar) {
          const ok = isValidToy(story + t, this.grammar);
          line.dataset.valid = ok ? 1 : 0;
          line.append(el("span", { class: ok ? "lm-ex-valid" : "lm-ex-invalid", text: ok ? "✓ valid  " : "✗ invalid" }), " ");
        }
        line.append(tail, el("span", { class: "lm-ex-new", text: oneLine(t) }));
        return line;
      });
      this.samples.replaceChildren(el("b", { text: `sampled continuations (${texts.length}):` }), ...lines);
    }
  }

  const instances = [];
  function mount() {
    document.querySelectorAll(".lm-explorer").forEach(root => {
      if (!root.lmExplorer) { root.lmExplorer = new Explorer(root); instances.push(root.lmExplorer); }
    });
  }
  window.lmExplorer = { softmaxT, topK, topP, minP, filterProbs, entropy, drawIndex, isValidToy, ranking, instances,
                        mount, loadModel };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", mount); else mount();
})();
