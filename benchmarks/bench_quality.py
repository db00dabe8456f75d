"""Training quality: Tiny Shakespeare against nanoGPT's published CPU result, and the toy model's
gap to the entropy floor.

* ``shakespeare``: nanoGPT's CPU configuration (4 layers, 4 heads, 128 dims, context 64, batch 12,
  2000 iterations, lr 1e-3 cosine to 1e-4 with 100 warm-up steps, dropout 0); nanoGPT's README
  reports a validation loss of 1.88 for it.  We report ours (estimated on 200 batches) and the
  wall-clock and CPU time.  Needs the corpus (``$LMCORE_LOCAL_DATA`` or the cache).
* ``toy``: ``lmcore.pretrained("toy-char")`` retrained from scratch (time measured), its exact
  validation cross-entropy on the whole toy validation split (every character scored with at least
  ``block_size / 2`` characters of context) minus the language's entropy, 0.3425 nats/char, and
  the share of main verbs that agree with their subject across a relative clause in samples.

    python benchmarks/bench_quality.py                 # both (several minutes on a CPU)
    python benchmarks/bench_quality.py --runs toy --json
"""
from __future__ import annotations

import json
import time

import torch
import torch.nn.functional as F

import lmcore
from _common import benchmark_parser, machine_info, report
from lmcore import data
from lmcore.model import GPT, GPTConfig
from lmcore.tokenizers import CharTokenizer
from lmcore.trainer import TrainConfig, Trainer

NANOGPT_VAL_LOSS = 1.88


def shakespeare(device: str) -> dict:
    text = data.load_text("tinyshakespeare")
    tok = CharTokenizer().train(text)
    ids = torch.tensor(tok.encode(text), dtype=torch.long)
    n = int(0.9 * len(ids))                      # nanoGPT's split: first 90% train, last 10% val
    torch.manual_seed(1337)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=4, n_head=4, n_embd=128, dropout=0.0))
    cfg = TrainConfig(max_steps=2000, batch_size=12, block_size=64, lr=1e-3, min_lr=1e-4, warmup_steps=100,
                      lr_decay_steps=2000, weight_decay=0.1, beta1=0.9, beta2=0.99, grad_clip=1.0,
                      eval_interval=2000, eval_iters=200, seed=1337, device=device)
    trainer = Trainer(model, cfg, ids[:n], ids[n:])
    wall, cpu = time.perf_counter(), time.process_time()
    trainer.train()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    _, val = trainer.series("val_loss")
    return {"run": "tinyshakespeare char, nanoGPT CPU config", "val loss": round(val[-1], 4),
            "reference": f"nanoGPT {NANOGPT_VAL_LOSS}", "reached": val[-1] <= NANOGPT_VAL_LOSS,
            "wall s": round(wall, 1), "cpu s": round(cpu, 1)}


@torch.no_grad()
def exact_cross_entropy(model: GPT, ids: torch.Tensor) -> float:
    """Mean next-token cross-entropy over ``ids`` in nats: windows of ``block_size`` with stride
    ``block_size / 2``, scoring only each window's second half (the first window scores all)."""
    block = model.config.block_size
    stride = block // 2
    device = next(model.parameters()).device
    total, count = 0.0, 0
    starts = list(range(0, len(ids) - block - 1, stride))
    for i in range(0, len(starts), 64):
        batch = torch.stack([ids[s:s + block + 1] for s in starts[i:i + 64]]).to(device)
        logits, _ = model(batch[:, :-1])
        nll = F.cross_entropy(logits.transpose(1, 2), batch[:, 1:], reduction="none")   # (B, T)
        for row, s in zip(nll, starts[i:i + 64]):
            scored = row if s == 0 else row[block - stride:]
            total += scored.sum().item()
            count += scored.numel()
    return total / count


def toy(device: str, retrain: bool) -> dict:
    wall = time.perf_counter()
    model, tok = lmcore.pretrained("toy-char", device=device, retrain=retrain)
    wall = time.perf_counter() - wall
    meta = json.loads((lmcore.zoo.model_dir("toy-char", device) / "meta.json").read_text())
    lang = data.ToyLanguage()
    ce = exact_cross_entropy(model, torch.tensor(tok.encode(data.toy_corpus("val"))))
    prompts = torch.tensor([tok.encode("\n")] * 500, device=next(model.parameters()).device)
    samples = model.generate(prompts, 150, generator=torch.Generator(prompts.device).manual_seed(0))
    stories = [tok.decode(row[1:].tolist()).split("\n")[0] + "\n" for row in samples]
    agree_err, agree_n = lang.agreement_errors(stories)
    pron_err, pron_n = lang.pronoun_errors(stories)
    valid = sum(lang.is_valid(s) for s in stories)
    return {"run": "toy-char zoo recipe" + (" (retrained)" if retrain else " (cached)"),
            "val CE nats/char": round(ce, 4), "floor": round(lang.entropy_per_char, 4),
            "gap": round(ce - lang.entropy_per_char, 4),
            "agreement ok": f"{agree_n - agree_err}/{agree_n}", "pronoun ok": f"{pron_n - pron_err}/{pron_n}",
            "valid stories": f"{valid}/{len(stories)}", "train s (meta)": meta["train_seconds"],
            "call s": round(wall, 1)}


def main() -> None:
    parser = benchmark_parser(__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=["shakespeare", "toy"], choices=["shakespeare", "toy"])
    parser.add_argument("--cached", action="store_true", help="toy: use the cached zoo model, do not retrain")
    args = parser.parse_args()
    rows = []
    for run in args.runs:
        rows.append(shakespeare(args.device) if run == "shakespeare" else toy(args.device, not args.cached))
    report(rows, args, title="training quality", meta=machine_info())


if __name__ == "__main__":
    main()
