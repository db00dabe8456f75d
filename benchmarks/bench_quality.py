"""Training quality: Tiny Shakespeare against nanoGPT's published CPU result, and the toy model's
gap to the entropy floor.

* ``shakespeare``: nanoGPT's CPU configuration (4 layers, 4 heads, 128 dims, context 64, batch 12,
  2000 iterations, lr 1e-3 cosine to 1e-4 with 100 warm-up steps, dropout 0, no biases); nanoGPT's
  README reports a validation loss of 1.88 for it (estimated there on 20 batches).  We report ours
  (estimated on 200 batches) per seed with the wall-clock and CPU time, and with ``--nanogpt DIR``
  run nanoGPT's own ``train.py`` from a local checkout with the same configuration and the same
  200-batch estimate, so the two are compared on one machine.  Needs the corpus
  (``$LMCORE_LOCAL_DATA`` or the cache).
* ``toy``: the ``toy-char`` recipe retrained from scratch (time measured; ``--cached`` measures the
  shipped weights instead), its validation cross-entropy on the whole toy validation split
  (``lmcore.zoo.validation_loss``) minus the language's entropy, 0.3425 nats/char, and in 1000
  sampled stories the agreement-error and pronoun-error rates and the share of valid stories, each
  with a 95% Wilson interval.

    python benchmarks/bench_quality.py                 # both (several minutes on a CPU)
    python benchmarks/bench_quality.py --runs toy --json
    python benchmarks/bench_quality.py --runs shakespeare --seeds 1337 1 2 --nanogpt ~/src/nanoGPT
"""
from __future__ import annotations

import math
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _common import benchmark_parser, machine_info, report

import lmcore
from lmcore import data
from lmcore.decoding import generate
from lmcore.models import GPT, GPTConfig
from lmcore.tokenizers import CharTokenizer
from lmcore.training import TrainConfig, Trainer

NANOGPT_VAL_LOSS = 1.88


# nanoGPT's README command for a CPU: config/train_shakespeare_char.py with these overrides.
NANOGPT_CPU = dict(n_layer=4, n_head=4, n_embd=128, block_size=64, batch_size=12, max_iters=2000,
                   lr_decay_iters=2000, dropout=0.0, learning_rate=1e-3, min_lr=1e-4, warmup_iters=100,
                   beta2=0.99, weight_decay=0.1, grad_clip=1.0, bias=False, eval_iters=200)


def shakespeare(device: str, seed: int = 1337) -> dict:
    c = NANOGPT_CPU
    text = data.load_text("tinyshakespeare")
    tok = CharTokenizer().train(text)
    ids = torch.tensor(tok.encode(text), dtype=torch.long)
    n = int(0.9 * len(ids))                      # nanoGPT's split: first 90% train, last 10% val
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, context_length=c["block_size"], n_layer=c["n_layer"],
                          n_head=c["n_head"], n_embd=c["n_embd"], dropout=c["dropout"], bias=c["bias"]))
    cfg = TrainConfig(max_steps=c["max_iters"], batch_size=c["batch_size"], seq_len=c["block_size"],
                      lr=c["learning_rate"], min_lr=c["min_lr"], warmup_steps=c["warmup_iters"],
                      lr_decay_steps=c["lr_decay_iters"], weight_decay=c["weight_decay"], beta1=0.9,
                      beta2=c["beta2"], grad_clip=c["grad_clip"], eval_interval=c["max_iters"],
                      eval_iters=c["eval_iters"], seed=seed, device=device, progress=False)
    trainer = Trainer(model, cfg, ids[:n], ids[n:])
    wall, cpu = time.perf_counter(), time.process_time()
    trainer.train()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    _, val = trainer.series("val_loss")
    return {"run": "lmcore", "seed": seed, "val loss": round(val[-1], 4),
            "reached 1.88": val[-1] <= NANOGPT_VAL_LOSS, "wall s": round(wall, 1), "cpu s": round(cpu, 1)}


def nanogpt_peer(repo: Path, device: str) -> dict:
    """Run nanoGPT's own ``train.py`` (a local checkout at ``repo``) with the same configuration.

    nanoGPT seeds with 1337 and cannot be given another seed.  Its ``prepare.py`` reads
    ``data/shakespeare_char/input.txt``; we put our copy of the corpus there first, so nothing is
    downloaded.
    """
    prep = repo / "data" / "shakespeare_char"
    if not (repo / "train.py").is_file() or not (prep / "prepare.py").is_file():
        raise ValueError(f"--nanogpt must be a nanoGPT checkout (train.py, data/shakespeare_char/), got {repo}")
    (prep / "input.txt").write_text(data.load_text("tinyshakespeare"))
    subprocess.run([sys.executable, "prepare.py"], cwd=prep, check=True, capture_output=True)
    with tempfile.TemporaryDirectory() as out:
        args = [f"--{k}={v}" for k, v in NANOGPT_CPU.items()]
        cmd = [sys.executable, "train.py", "config/train_shakespeare_char.py", f"--device={device}",
               "--compile=False", f"--out_dir={out}", f"--eval_interval={NANOGPT_CPU['max_iters']}",
               "--log_interval=100", *args]
        wall = time.perf_counter()
        run = subprocess.run(cmd, cwd=repo, check=True, capture_output=True, text=True)
        wall = time.perf_counter() - wall
    final = re.findall(r"step (\d+): train loss ([\d.]+), val loss ([\d.]+)", run.stdout)[-1]
    if int(final[0]) != NANOGPT_CPU["max_iters"]:
        raise RuntimeError(f"nanoGPT's last evaluation was at step {final[0]}:\n{run.stdout[-2000:]}")
    val = float(final[2])
    return {"run": "nanoGPT train.py (same machine)", "seed": 1337, "val loss": val,
            "reached 1.88": val <= NANOGPT_VAL_LOSS, "wall s": round(wall, 1), "cpu s": "-"}


def wilson(k: int, n: int, z: float = 1.96) -> str:
    """``k/n = rate [lo, hi]`` with the Wilson score interval (95% by default)."""
    if n == 0:
        return "0/0"
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return f"{k}/{n} = {p:.1%} [{max(0.0, centre - half):.1%}, {min(1.0, centre + half):.1%}]"


def toy(device: str, retrain: bool, n_stories: int = 1000) -> dict:
    """The shipped toy-char model (or one retrained here): gap to the floor, and the long-range
    rules in ``n_stories`` sampled stories (temperature 1, prompt "\\n"), with 95% intervals."""
    wall = time.perf_counter()
    if retrain:
        report = lmcore.zoo.retrain_model("toy-char", device=device)
        model, tok = lmcore.load_model(report.path, device=device)
        train_s = report.train_seconds
    else:
        model, tok = lmcore.pretrained("toy-char", device=device)
        train_s = lmcore.zoo.model_info("toy-char")["train_seconds"]
    wall = time.perf_counter() - wall
    lang = data.ToyLanguage()
    ce = lmcore.zoo.validation_loss(model, torch.tensor(tok.encode(data.toy_corpus("val"))))
    prompts = torch.tensor([tok.encode("\n")] * n_stories, device=next(model.parameters()).device)
    samples = generate(model, prompts, 300, generator=torch.Generator(prompts.device).manual_seed(0))
    stories = [tok.decode(row[1:].tolist()).split("\n")[0] + "\n" for row in samples]
    agree_err, agree_n = lang.agreement_errors(stories)
    pron_err, pron_n = lang.pronoun_errors(stories)
    valid = sum(lang.is_valid(s) for s in stories)
    return {"run": "toy-char" + (" (retrained here)" if retrain else " (shipped)"),
            "val CE nats/char": round(ce, 4), "floor": round(lang.entropy_per_char, 4),
            "gap": round(ce - lang.entropy_per_char, 4),
            "agreement errors": wilson(agree_err, agree_n), "pronoun errors": wilson(pron_err, pron_n),
            "valid stories": wilson(valid, len(stories)), "train s": train_s, "call s": round(wall, 1)}


def main() -> None:
    parser = benchmark_parser(__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=["shakespeare", "toy"], choices=["shakespeare", "toy"])
    parser.add_argument("--cached", action="store_true", help="toy: measure the shipped model, do not retrain")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1337],
                        help="shakespeare: one training run per seed (nanoGPT uses 1337)")
    parser.add_argument("--nanogpt", type=Path, default=None,
                        help="shakespeare: also run nanoGPT's train.py from this local checkout, side by side")
    args = parser.parse_args()
    rows = []
    for run in args.runs:
        if run == "shakespeare":
            rows.extend(shakespeare(args.device, seed) for seed in args.seeds)
            if args.nanogpt is not None:
                rows.append(nanogpt_peer(args.nanogpt, args.device))
        else:
            rows.append(toy(args.device, not args.cached))
    report(rows, args, title="training quality", meta=machine_info())


if __name__ == "__main__":
    main()
