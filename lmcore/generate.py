"""Sample text from a trained model: ``python -m lmcore.generate --help``.

Examples::

    python -m lmcore.generate --ckpt runs/shakespeare --prompt "ROMEO:" --max-new-tokens 300
    python -m lmcore.generate --ckpt runs/toy --prompt "the cat" --temperature 0.8 --top-p 0.9
    python -m lmcore.generate --zoo toy-char --num-samples 5
"""
from __future__ import annotations

import argparse
import sys

import torch

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m lmcore.generate",
        description="Continue a prompt with a model trained by `python -m lmcore.train` (or from the zoo).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--ckpt", help="run directory written by lmcore.train (or its last.pt / best.pt)")
    src.add_argument("--zoo", help="a model of lmcore.zoo.list_models(), e.g. toy-char (shipped weights)")
    p.add_argument("--best", action="store_true", help="use best.pt (lowest validation loss) instead of last.pt")
    p.add_argument("--prompt", default="\n", help="text to continue (every character must be in the vocabulary)")
    p.add_argument("--max-new-tokens", type=int, default=200, help="tokens to generate after the prompt")
    p.add_argument("--num-samples", type=int, default=1, help="independent continuations")
    p.add_argument("--temperature", type=float, default=1.0, help="< 1 sharper, > 1 flatter; 0 = greedy")
    p.add_argument("--top-k", type=int, default=None, help="sample only among the k most likely tokens")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling: smallest set with this much mass")
    p.add_argument("--min-p", type=float, default=None,
                   help="drop tokens less likely than min_p times the most likely one")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .zoo import load_model, pretrained

    try:
        if args.max_new_tokens < 1 or args.num_samples < 1:
            raise ValueError("--max-new-tokens and --num-samples must be >= 1")
        if args.zoo:
            model, tok = pretrained(args.zoo, device=args.device)
        else:
            model, tok = load_model(args.ckpt, device=args.device, tag="best" if args.best else "last")
        ids = tok.encode(args.prompt)
        if not ids:
            raise ValueError("--prompt is empty; give at least one character (the default is a newline)")
        device = next(model.parameters()).device
        idx = torch.tensor([ids] * args.num_samples, dtype=torch.long, device=device)
        gen = torch.Generator(device=device).manual_seed(args.seed)
        out = model.generate(idx, args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                             top_p=args.top_p, min_p=args.min_p, generator=gen)
    except (ValueError, TypeError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for i, row in enumerate(out.tolist()):
        if args.num_samples > 1:
            print(f"--- sample {i + 1} ---")
        print(tok.decode(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
