"""Train a character-level GPT from the command line: ``python -m lmcore.train --help``.

Examples::

    # the toy language, a few minutes on a laptop CPU
    python -m lmcore.train --corpus toy --out runs/toy
    # Tiny Shakespeare with nanoGPT's CPU settings; continue later with --resume
    python -m lmcore.train --corpus tinyshakespeare --n-layer 4 --n-head 4 --n-embd 128 \\
        --block-size 64 --batch-size 12 --steps 2000 --out runs/shakespeare
    python -m lmcore.train --corpus tinyshakespeare ... --steps 4000 --out runs/shakespeare --resume
    # then sample from it
    python -m lmcore.generate --ckpt runs/shakespeare --prompt "ROMEO:"

Under ``torchrun`` the same command trains on several processes (see :mod:`lmcore.distributed`).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from . import data
from .distributed import cleanup_distributed, init_distributed
from .model import GPT, GPTConfig
from .runtime import seed_everything
from .tokenizers import CharTokenizer, load_tokenizer
from .trainer import TrainConfig, Trainer

__all__ = ["build_parser", "main", "load_corpus"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m lmcore.train",
        description="Train a character-level GPT on a text corpus and save checkpoints to --out.",
        epilog="Then sample from it: python -m lmcore.generate --ckpt OUT --prompt '...'",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d = TrainConfig()
    g = p.add_argument_group("data")
    g.add_argument("--corpus", default="toy",
                   help="'toy' (the toy language), 'tinyshakespeare', or the path of a UTF-8 text file")
    g.add_argument("--tokenizer", default="char", choices=["char"], help="how text becomes token ids")
    g.add_argument("--val-fraction", type=float, default=0.1,
                   help="share of the text (its tail) kept for validation; the toy corpus has its own split")
    g = p.add_argument_group("model")
    g.add_argument("--n-layer", type=int, default=4, help="transformer blocks")
    g.add_argument("--n-head", type=int, default=4, help="attention heads per block")
    g.add_argument("--n-embd", type=int, default=128, help="embedding width (divisible by --n-head)")
    g.add_argument("--block-size", type=int, default=128, help="context length in tokens")
    g.add_argument("--dropout", type=float, default=0.0, help="dropout probability")
    g = p.add_argument_group("optimisation")
    g.add_argument("--steps", type=int, default=d.max_steps, help="optimiser steps in the whole run")
    g.add_argument("--batch-size", type=int, default=d.batch_size,
                   help="sequences per micro-step (global: split across processes under torchrun)")
    g.add_argument("--grad-accum", type=int, default=d.grad_accum_steps, help="micro-steps per optimiser step")
    g.add_argument("--lr", type=float, default=d.lr, help="peak learning rate")
    g.add_argument("--min-lr", type=float, default=d.min_lr, help="learning rate at the end of the cosine")
    g.add_argument("--warmup", type=int, default=d.warmup_steps, help="linear warm-up steps")
    g.add_argument("--weight-decay", type=float, default=d.weight_decay, help="AdamW weight decay (matrices only)")
    g.add_argument("--grad-clip", type=float, default=d.grad_clip, help="max gradient norm (0 = off)")
    g = p.add_argument_group("run")
    g.add_argument("--out", required=True, help="directory for checkpoints (last.pt, best.pt) and tokenizer.json")
    g.add_argument("--resume", action="store_true", help="continue the run saved in --out (same settings)")
    g.add_argument("--eval-interval", type=int, default=d.eval_interval, help="evaluate and checkpoint every N steps")
    g.add_argument("--eval-iters", type=int, default=d.eval_iters, help="batches per loss estimate")
    g.add_argument("--seed", type=int, default=d.seed, help="seed for the model init and the batches")
    g.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    g.add_argument("--dtype", default=d.dtype, choices=["auto", "float32", "bfloat16", "float16"],
                   help="auto = bfloat16/float16 mixed precision on CUDA, float32 elsewhere")
    g.add_argument("--compile", action="store_true", help="torch.compile the model (GPUs; slow start)")
    g.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def load_corpus(corpus: str, val_fraction: float = 0.1) -> tuple[str, str]:
    """``(train_text, val_text)`` of a corpus name or text file (the toy language has fixed splits)."""
    if corpus == "toy":
        return data.toy_corpus("train"), data.toy_corpus("val")
    text = data.load_text(corpus)
    if not 0 < val_fraction < 1:
        raise ValueError(f"--val-fraction must be in (0, 1), got {val_fraction}")
    cut = len(text) - max(1, int(round(len(text) * val_fraction)))
    return text[:cut], text[cut:]


def _tokenizer(args: argparse.Namespace, train_text: str, val_text: str) -> CharTokenizer:
    path = Path(args.out) / "tokenizer.json"
    if args.resume:
        if not path.is_file():
            raise FileNotFoundError(f"--resume: no {path}; is --out the directory of an earlier run?")
        return load_tokenizer(path)
    # Every character of the corpus (both splits), so validation text never holds an unknown one.
    return CharTokenizer().train(train_text + val_text)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    info = init_distributed()
    try:
        train_text, val_text = load_corpus(args.corpus, args.val_fraction)
        tok = _tokenizer(args, train_text, val_text)
        train_ids = torch.tensor(tok.encode(train_text), dtype=torch.long)
        val_ids = torch.tensor(tok.encode(val_text), dtype=torch.long)
        config = TrainConfig(
            max_steps=args.steps, batch_size=args.batch_size, block_size=args.block_size,
            grad_accum_steps=args.grad_accum, lr=args.lr, min_lr=args.min_lr, warmup_steps=args.warmup,
            weight_decay=args.weight_decay, grad_clip=args.grad_clip, eval_interval=args.eval_interval,
            eval_iters=args.eval_iters, seed=args.seed, device=args.device, dtype=args.dtype,
            compile=args.compile, out_dir=args.out, progress=not args.no_progress)
        seed_everything(args.seed)
        model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=args.block_size, n_layer=args.n_layer,
                              n_head=args.n_head, n_embd=args.n_embd, dropout=args.dropout))
        trainer = Trainer(model, config, train_ids, val_ids)
        if args.resume:
            trainer.resume()
        elif info.is_main:
            tok.save(Path(args.out) / "tokenizer.json")
        if info.is_main:
            print(f"{model.num_params():,} parameters (non-embedding) | {len(train_ids):,} training tokens | "
                  f"device {trainer.device} | {info.world_size} process(es) | starting at step {trainer.step}")
        trainer.train()
    except (ValueError, TypeError, FileNotFoundError, ConnectionError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        cleanup_distributed()
    if info.is_main:
        _, val = trainer.series("val_loss")
        print(f"done: step {trainer.step}, val loss {val[-1]:.4f} | checkpoint {Path(args.out) / 'last.pt'}\n"
              f"sample from it: python -m lmcore.generate --ckpt {args.out} --prompt '...'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
