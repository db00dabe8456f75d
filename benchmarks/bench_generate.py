"""Greedy generation speed: lmcore with and without the KV cache vs transformers' GPT-2 with and without.

One randomly initialised GPT-2-shaped model (learned positions, gelu_new, tied head) is created in
``transformers`` and loaded into ``lmcore.GPT`` with ``GPT.from_hf_gpt2``, so all four runs compute
the same function and must produce the same tokens (checked, reported in the "same tokens" column).
Each run generates ``--new-tokens`` tokens greedily from a short random prompt, one sequence.

Defaults are the issue's setting: 6 layers, 6 heads, 384 dims, block 1024, 1000 new tokens. Uncached
generation is quadratic in the length, so on a small shared CPU pass a smaller model and fewer
tokens (the numbers in the report say which were used), e.g.::

    python benchmarks/bench_generate.py --n-layer 2 --n-head 2 --n-embd 128 --new-tokens 600 --threads 1

Targets: lmcore cached >= 5x lmcore uncached, and >= 1.0x transformers cached.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import benchmark_parser, machine_info, report  # noqa: E402

from lmcore import generate, get_device  # noqa: E402
from lmcore.models import from_hf_gpt2  # noqa: E402


def main() -> None:
    parser = benchmark_parser(__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=1000, help="tokens to generate (default 1000)")
    parser.add_argument("--context-length", type=int, default=1024)
    parser.add_argument("--n-layer", type=int, default=6)
    parser.add_argument("--n-head", type=int, default=6)
    parser.add_argument("--n-embd", type=int, default=384)
    parser.add_argument("--vocab-size", type=int, default=50257)
    parser.add_argument("--prompt-len", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.prompt_len + args.new_tokens > args.context_length:
        parser.error("--prompt-len + --new-tokens must fit in --context-length (this benchmark measures no window restarts)")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = get_device(args.device)

    import transformers
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=args.vocab_size, n_positions=args.context_length, n_layer=args.n_layer,
        n_head=args.n_head, n_embd=args.n_embd)).eval()
    hf.generation_config.eos_token_id = None           # never stop early: always generate every token
    hf.generation_config.pad_token_id = 0
    ours = from_hf_gpt2(hf).to(device)
    hf = hf.to(device)
    prompt = torch.randint(0, args.vocab_size, (1, args.prompt_len), device=device)
    mask = torch.ones_like(prompt)

    runs = {
        "lmcore cached": lambda: generate(ours, prompt, args.new_tokens, temperature=0, use_cache=True),
        "lmcore uncached": lambda: generate(ours, prompt, args.new_tokens, temperature=0, use_cache=False),
        "transformers cached": lambda: hf.generate(prompt, attention_mask=mask, do_sample=False, use_cache=True,
                                                   max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens),
        "transformers uncached": lambda: hf.generate(prompt, attention_mask=mask, do_sample=False, use_cache=False,
                                                     max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens),
    }
    generate(ours, prompt, 8, temperature=0)             # warm-up (allocator, kernels) for both libraries
    hf.generate(prompt, attention_mask=mask, do_sample=False, max_new_tokens=8)
    seconds, outputs = {}, {}
    for name, fn in runs.items():
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        outputs[name] = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds[name] = time.perf_counter() - t0

    reference = outputs["lmcore cached"]
    rows = [{"run": name, "seconds": s, "tokens/s": args.new_tokens / s,
             "lmcore cached speed-up": s / seconds["lmcore cached"],
             "same tokens": bool(torch.equal(outputs[name], reference))}
            for name, s in seconds.items()]
    meta = machine_info() | {"device": str(device), "model": f"{args.n_layer}L/{args.n_head}H/{args.n_embd}d, "
                             f"vocab {args.vocab_size}, context {args.context_length}",
                             "new_tokens": args.new_tokens, "transformers": transformers.__version__}
    report(rows, args, title="greedy generation: lmcore vs transformers, with and without KV cache", meta=meta)


if __name__ == "__main__":
    main()
