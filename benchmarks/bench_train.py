"""Train-step throughput: lmcore's GPT + Trainer against Hugging Face's GPT2LMHeadModel.

Both models have the same dimensions and are trained by the same Trainer (so the same batches,
AdamW with the same parameter groups, clipping and schedule); the Hugging Face model is wrapped
to return ``(logits, loss)`` with the same cross-entropy.  The two are timed alternately, step by
step, so machine load affects both alike; the table reports tokens per second and the ratio.

    python benchmarks/bench_train.py            # both cases (the large one takes a few minutes on a CPU)
    python benchmarks/bench_train.py --cases small --steps 20 --json
"""
from __future__ import annotations

import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from _common import benchmark_parser, machine_info, report

from lmcore.models import GPT, GPTConfig
from lmcore.training import TrainConfig, Trainer

CASES = {  # name: (n_layer, n_head, n_embd, block_size, batch_size)
    "small": (4, 4, 128, 64, 12),
    "large": (6, 6, 384, 256, 64),
}
VOCAB = 65  # Tiny Shakespeare's character vocabulary


class HFAdapter(nn.Module):
    """``GPT2LMHeadModel`` behind the ``forward(x, targets) -> (logits, loss)`` interface."""

    def __init__(self, n_layer: int, n_head: int, n_embd: int, block_size: int) -> None:
        super().__init__()
        from transformers import GPT2Config, GPT2LMHeadModel

        cfg = GPT2Config(vocab_size=VOCAB, n_positions=block_size, n_embd=n_embd, n_layer=n_layer,
                         n_head=n_head, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                         bos_token_id=None, eos_token_id=None)
        cfg._attn_implementation = "sdpa"
        self.hf = GPT2LMHeadModel(cfg)

    def forward(self, x: torch.Tensor, targets: torch.Tensor):
        logits = self.hf(input_ids=x).logits
        return logits, F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))


def make_trainers(case: str, device: str, compile: bool) -> dict[str, Trainer]:
    n_layer, n_head, n_embd, block, batch = CASES[case]
    data = torch.randint(VOCAB, (200_000,), generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig(max_steps=10_000, batch_size=batch, seq_len=block, warmup_steps=10, device=device,
                      compile=compile, progress=False)
    torch.manual_seed(0)
    ours = GPT(GPTConfig(vocab_size=VOCAB, context_length=block, n_layer=n_layer, n_head=n_head, n_embd=n_embd))
    torch.manual_seed(0)
    theirs = HFAdapter(n_layer, n_head, n_embd, block)
    return {"lmcore": Trainer(ours, cfg, data), "transformers": Trainer(theirs, cfg, data)}


def bench_case(case: str, steps: int, device: str, compile: bool) -> dict:
    trainers = make_trainers(case, device, compile)
    times: dict[str, list[float]] = {name: [] for name in trainers}
    for i in range(steps + 2):               # two warm-up steps each (allocations, compilation)
        for name, trainer in trainers.items():
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            trainer.train_step()             # ends with .item(): the step has finished
            if i >= 2:
                times[name].append(time.perf_counter() - t0)
    n_layer, n_head, n_embd, block, batch = CASES[case]
    tokens = batch * block
    ours, theirs = (tokens / statistics.median(times[k]) for k in ("lmcore", "transformers"))
    return {"case": f"{case} {n_layer}L/{n_head}H/{n_embd}d T={block} B={batch}", "steps": steps,
            "lmcore tok/s": ours, "transformers tok/s": theirs, "ratio lmcore/transformers": ours / theirs}


def main() -> None:
    parser = benchmark_parser(__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps per model (default: 20 for small, 4 for large)")
    parser.add_argument("--compile", action="store_true", help="torch.compile both models")
    args = parser.parse_args()
    rows = [bench_case(c, args.steps or (20 if c == "small" else 4), args.device, args.compile)
            for c in args.cases]
    report(rows, args, title="train-step throughput (median over steps; higher is better)",
           meta={**machine_info(), "compile": args.compile})


if __name__ == "__main__":
    main()
