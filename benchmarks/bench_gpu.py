"""GPU speed (issue 20): GPT-2 124M training and cached decoding, side by side with nanoGPT's model.py.

Needs a CUDA GPU. Without one it measures nothing: it prints why and exits 0 (with ``--json``, an
object ``{"skipped": reason, ...}``), so CI and CPU machines can run it.

Rows, all in one run on one GPU:

- **train**: GPT-2 124M (12 layers, 12 heads, 768 dims, exact GELU as nanoGPT), batch 16 x 1024,
  AdamW, autocast bfloat16 (float16 below compute capability 8.0, without loss scaling: only the
  time is measured); lmcore eager and compiled, with
  vocabulary 50257 and 50257 padded to 50304 (``GPTConfig(pad_vocab_to=64)``; that row is left out
  when GPTConfig has no such field), and nanoGPT's model at 50257 and 50304. Columns: ms/step,
  tok/s, MFU (6N + 12·L·H·Q·T flops per token, nanoGPT's estimate, against the GPU's dense peak),
  peak memory, compile time (first step minus a timed step).
- **decode**: greedy ``lmcore.generate`` with the KV cache, ``--new-tokens`` tokens after a
  16-token prompt, batch 1 and 64, float32 and bfloat16 weights, eager and ``torch.compile``;
  nanoGPT's own (uncached) ``generate`` at batch 1 for the "cached >= 10x uncached" target.

nanoGPT is measured, never copied into this repository. Fetch it anywhere and pass its model.py::

    git clone https://github.com/karpathy/nanoGPT /tmp/nanoGPT
    python benchmarks/bench_gpu.py --nanogpt /tmp/nanoGPT/model.py

Without ``--nanogpt`` its rows are left out. On a GPU the table is also written into
``benchmarks/RESULTS.md`` (between ``bench_gpu`` markers, the GPU named; ``--no-write`` to skip).
``--tiny --device cpu`` runs a two-layer model for a few steps on the CPU: a smoke test of this
script, never written to RESULTS.md.

- **shakespeare** (``--shakespeare``): nanoGPT's Shakespeare-char configuration trained by
  ``lmcore.Trainer`` (6 layers, 6 heads, 384 dims, context 256, dropout 0.2, batch 64, lr 1e-3 to
  1e-4 over 5000 steps, warm-up 100, beta2 0.99): the validation loss over the whole split
  (``lmcore.zoo.validation_loss``) and the wall time, against nanoGPT's reported 1.4697 in about 3
  minutes on an A100. Needs Tiny Shakespeare (``lmcore.data.available("tinyshakespeare")``).
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import benchmark_parser, format_table, machine_info, time_fn  # noqa: E402

TITLE = "GPU benchmark: GPT-2 124M training and cached decoding, lmcore and nanoGPT"
RESULTS = Path(__file__).with_name("RESULTS.md")
START, END = "<!-- bench_gpu: start -->", "<!-- bench_gpu: end -->"
# dense bfloat16 peak TFLOPS (float16 for T4 and V100, which have no fast bfloat16), by name fragment
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0,
               "T4": 65.0, "V100": 125.0}
GPT2 = dict(n_layer=12, n_head=12, n_embd=768, block=1024, batch=16)
TINY = dict(n_layer=2, n_head=2, n_embd=64, block=64, batch=2)


def skip_reason(device: torch.device, tiny: bool) -> str | None:
    """Why nothing is measured here, or None."""
    if device.type == "cuda" and not torch.cuda.is_available():
        return "no CUDA GPU (torch.cuda.is_available() is False); this benchmark measures GPU speed"
    if device.type != "cuda" and not tiny:
        return f"--device {device} is not a CUDA GPU; only --tiny (a smoke test) runs elsewhere"
    return None


def autocast_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 where the GPU has it natively (compute capability >= 8.0), else float16; bfloat16 on the CPU."""
    if device.type == "cuda" and torch.cuda.get_device_capability(device)[0] < 8:
        return torch.float16
    return torch.bfloat16


def peak_flops(device: torch.device, override: float | None) -> float | None:
    if override is not None:
        return override * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((t * 1e12 for key, t in PEAK_TFLOPS.items() if key in name), None)


def load_nanogpt(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location("nanogpt_model", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def lmcore_model(size: dict, vocab: int, pad: bool) -> torch.nn.Module:
    from lmcore.models import GPT, GPTConfig
    extra = dict(pad_vocab_to=64) if pad else {}
    return GPT(GPTConfig(vocab_size=vocab, context_length=size["block"], n_layer=size["n_layer"],
                         n_head=size["n_head"], n_embd=size["n_embd"], **extra))


def nanogpt_model(nanogpt: Any, size: dict, vocab: int) -> torch.nn.Module:
    with contextlib.redirect_stdout(sys.stderr):       # it prints its parameter count; keep --json clean
        return nanogpt.GPT(nanogpt.GPTConfig(block_size=size["block"], vocab_size=vocab, n_layer=size["n_layer"],
                                             n_head=size["n_head"], n_embd=size["n_embd"], dropout=0.0, bias=True))


def flops_per_token(model: torch.nn.Module, size: dict) -> float:
    """nanoGPT's estimate (PaLM appendix B): 6N + 12·L·H·Q·T, N without the position embedding."""
    n = sum(p.numel() for name, p in model.named_parameters() if "wpe" not in name)
    head_dim = size["n_embd"] // size["n_head"]
    return 6 * n + 12 * size["n_layer"] * size["n_head"] * head_dim * size["block"]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_row(name: str, model: torch.nn.Module, size: dict, args, device: torch.device, compiled: bool) -> dict:
    model = model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=6e-4, fused=device.type == "cuda")
    fwd = torch.compile(model, backend=args.backend) if compiled else model
    gen = torch.Generator().manual_seed(0)
    x, y = (torch.randint(0, 50257, (size["batch"], size["block"]), generator=gen).to(device) for _ in range(2))
    dtype = autocast_dtype(device)

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype):
            _, loss = fwd(x, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    step()
    sync(device)
    first = time.perf_counter() - t0
    seconds = time_fn(step, repeats=args.steps, warmup=args.warmup, device=device)["median"]
    tokens = size["batch"] * size["block"]
    peak = peak_flops(device, args.peak_tflops)
    row = {"run": name, "ms/step": 1e3 * seconds, "tok/s": tokens / seconds,
           "MFU %": 100 * flops_per_token(model, size) * tokens / seconds / peak if peak else "n/a",
           "peak GiB": torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda" else "n/a",
           "compile s": max(0.0, first - seconds) if compiled else ""}
    return row


def train_rows(args, size: dict, device: torch.device, nanogpt: Any) -> list[dict]:
    from lmcore.models import GPTConfig
    can_pad = "pad_vocab_to" in {f.name for f in dataclasses.fields(GPTConfig)}
    rows: list[dict] = []
    for compiled in (False, True):
        mode = "compiled" if compiled else "eager"
        for pad in (False, True) if can_pad else (False,):
            torch.manual_seed(0)
            label = f"lmcore {mode}, vocab 50257" + (" padded to 50304" if pad else "")
            rows.append(train_row(label, lmcore_model(size, 50257, pad), size, args, device, compiled))
        if nanogpt is not None:
            for vocab in (50257, 50304):
                torch.manual_seed(0)
                rows.append(train_row(f"nanoGPT {mode}, vocab {vocab}", nanogpt_model(nanogpt, size, vocab),
                                      size, args, device, compiled))
        if device.type == "cuda":
            torch.cuda.empty_cache()       # the models of this mode are gone; start the next one clean
    if not can_pad:
        rows.append({"run": "lmcore padded vocabulary: not measured (GPTConfig has no pad_vocab_to)"})
    return rows


def decode_rows(args, size: dict, device: torch.device, nanogpt: Any) -> list[dict]:
    from lmcore import generate
    new = min(args.new_tokens, size["block"] - 16)
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        torch.manual_seed(0)
        model = lmcore_model(size, 50257, pad=False).to(device=device, dtype=dtype).eval()
        for compiled in (False, True):
            runner = torch.compile(model, backend=args.backend) if compiled else model
            for batch in args.decode_batches:
                prompt = torch.randint(0, 50257, (batch, 16), device=device)
                generate(runner, prompt, 4, temperature=0)               # warm-up (and compile)
                seconds = time_fn(lambda: generate(runner, prompt, new, temperature=0), repeats=1,
                                  warmup=0, device=device)["median"]
                rows.append({"run": f"lmcore cached {'compiled' if compiled else 'eager'}", "dtype": str(dtype)[6:],
                             "batch": batch, "new tokens": new, "ms/token": 1e3 * seconds / new,
                             "tok/s": batch * new / seconds})
        del model
    if nanogpt is not None:
        torch.manual_seed(0)
        model = nanogpt_model(nanogpt, size, 50257).to(device).eval()
        prompt = torch.randint(0, 50257, (1, 16), device=device)
        with torch.no_grad():
            model.generate(prompt, 4, top_k=1)
            seconds = time_fn(lambda: model.generate(prompt, new, top_k=1), repeats=1, warmup=0,
                              device=device)["median"]
        rows.append({"run": "nanoGPT uncached eager", "dtype": "float32", "batch": 1, "new tokens": new,
                     "ms/token": 1e3 * seconds / new, "tok/s": new / seconds})
    return rows


SHAKESPEARE = dict(model=dict(n_layer=6, n_head=6, n_embd=384, context_length=256, dropout=0.2),
                   train=dict(max_steps=5000, batch_size=64, lr=1e-3, min_lr=1e-4, warmup_steps=100, beta2=0.99,
                              eval_interval=500, eval_iters=20))


def shakespeare_rows(args, device: torch.device) -> list[dict]:
    """nanoGPT's Shakespeare-char run with lmcore's trainer: validation loss and wall time."""
    from lmcore import GPT, GPTConfig, TrainConfig, Trainer, data
    from lmcore.tokenizers import CharTokenizer
    from lmcore.zoo import validation_loss
    if not data.available("tinyshakespeare"):
        return [{"run": "Shakespeare-char: not measured (Tiny Shakespeare is not available here)"}]
    text = data.load_text("tinyshakespeare")
    tok = CharTokenizer().train(text)
    train_ids, val_ids = data.train_val_split(tok.encode(text), 0.1)
    model_cfg, train_cfg = dict(SHAKESPEARE["model"]), dict(SHAKESPEARE["train"])
    if args.tiny:   # a smoke test of this function: a small model for a few steps
        model_cfg.update(n_layer=1, n_head=2, n_embd=32, context_length=32)
        train_cfg.update(max_steps=5, batch_size=4, eval_interval=5, eval_iters=2, warmup_steps=1)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, **model_cfg))
    trainer = Trainer(model, TrainConfig(**train_cfg, device=str(device), progress=False), train_ids, val_ids)
    sync(device)
    t0 = time.perf_counter()
    trainer.train()
    sync(device)
    seconds = time.perf_counter() - t0
    val = validation_loss(model, val_ids[: 50_000 if args.tiny else None])
    return [{"run": f"lmcore Shakespeare-char ({train_cfg['max_steps']} steps, compile "
                    f"{'on' if trainer.compiled else 'off'})", "val loss (nats/char)": round(val, 4),
             "wall s": round(seconds, 1), "target": "val <= 1.47 in <= 120 s"}]


def write_results(train: list[dict], decode: list[dict], meta: dict, shakespeare: list[dict]) -> None:
    """Put the tables into RESULTS.md between the markers (appended the first time)."""
    section = "\n".join([
        START, f"## GPU: `python benchmarks/bench_gpu.py` on {meta['gpu']}", "",
        ", ".join(f"{k}: {v}" for k, v in meta.items()), "", "### Training step", "", format_table(train), "",
        "### Cached decoding", "", format_table(decode), "",
        *(["### Shakespeare-char (nanoGPT's configuration)", "", format_table(shakespeare), ""] if shakespeare else []),
        END])
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    if START in text and END in text:
        text = text[:text.index(START)] + section + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    RESULTS.write_text(text)


def main() -> int:
    parser = benchmark_parser(__doc__.splitlines()[0])
    parser.set_defaults(device="cuda")
    parser.add_argument("--nanogpt", type=Path, default=None, help="path to nanoGPT's model.py (see above)")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per row (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps after the first (default 3)")
    parser.add_argument("--new-tokens", type=int, default=1000, help="decoded tokens per row (default 1000)")
    parser.add_argument("--decode-batches", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--backend", default="inductor", help="torch.compile backend (default inductor)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the GPU's dense peak, for MFU")
    parser.add_argument("--tiny", action="store_true", help="a two-layer smoke test (any device)")
    parser.add_argument("--no-write", action="store_true", help="do not update benchmarks/RESULTS.md")
    parser.add_argument("--shakespeare", action="store_true",
                        help="also train nanoGPT's Shakespeare-char configuration (5000 steps)")
    args = parser.parse_args()
    if args.nanogpt is not None and not args.nanogpt.is_file():
        parser.error(f"--nanogpt {args.nanogpt}: no such file; pass the path of nanoGPT's model.py")
    for name in ("steps", "new_tokens"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    device = torch.device(args.device)
    reason = skip_reason(device, args.tiny)
    if reason is not None:
        if args.json:
            print(json.dumps({"title": TITLE, "skipped": reason, "meta": machine_info(), "results": {}}))
        else:
            print(f"bench_gpu: skipped: {reason}")
        return 0
    size = TINY if args.tiny else GPT2
    nanogpt = load_nanogpt(args.nanogpt) if args.nanogpt is not None else None
    train = train_rows(args, size, device, nanogpt)
    decode = decode_rows(args, size, device, nanogpt)
    shakespeare = shakespeare_rows(args, device) if args.shakespeare else []
    meta = machine_info() | {"device": str(device), "autocast": str(autocast_dtype(device))[6:],
                             "model": "tiny smoke test" if args.tiny else "GPT-2 124M, batch 16 x 1024",
                             "compile backend": args.backend,
                             "nanoGPT": str(args.nanogpt) if nanogpt is not None else "not given (--nanogpt)"}
    if args.json:
        print(json.dumps({"title": TITLE, "meta": meta, "results": {"train": train, "decode": decode,
                                                               "shakespeare": shakespeare}}, indent=2))
    else:
        print(f"## {TITLE}\n" + ", ".join(f"{k}: {v}" for k, v in meta.items()))
        print(f"\n### Training step\n\n{format_table(train)}\n\n### Cached decoding\n\n{format_table(decode)}")
        if shakespeare:
            print(f"\n### Shakespeare-char\n\n{format_table(shakespeare)}")
    if device.type == "cuda" and not args.tiny and not args.no_write:
        write_results(train, decode, meta, shakespeare)
    return 0


if __name__ == "__main__":
    sys.exit(main())
