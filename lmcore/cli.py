"""The command line: ``python -m lmcore {train, sample, prepare, zoo} --help``.

Examples::

    # train a character-level GPT on the toy language (a few minutes on a laptop CPU)
    python -m lmcore train --corpus toy --out runs/toy
    # Tiny Shakespeare with nanoGPT's CPU settings; continue later with --resume
    python -m lmcore train --corpus tinyshakespeare --n-layer 4 --n-head 4 --n-embd 128 \\
        --context-length 64 --batch-size 12 --steps 2000 --out runs/shakespeare
    python -m lmcore train --corpus tinyshakespeare ... --steps 4000 --out runs/shakespeare --resume
    # tokenize a corpus once into uint16 .bin files (checked by sha256), then train from them
    python -m lmcore prepare --corpus tinyshakespeare --out data/shakespeare
    python -m lmcore train --data data/shakespeare --out runs/shakespeare
    # sample from a run, or from a shipped model
    python -m lmcore sample --ckpt runs/shakespeare --prompt "ROMEO:" --max-new-tokens 300
    python -m lmcore sample --zoo toy-char --num-samples 5 --temperature 0.8 --top-p 0.9
    # the shipped models
    python -m lmcore zoo list
    python -m lmcore zoo verify
    python -m lmcore zoo retrain toy-char        train the recipe here; compare with the shipped model
    python -m lmcore zoo ship toy-char --force   (maintainers) replace the shipped weights

Under ``torchrun`` the ``train`` command trains on several processes (see
:mod:`lmcore.training.distributed`).
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from . import data
from ._io import sha256_file
from .decoding import generate
from .models import GPT, GPTConfig
from .runtime import seed_everything
from .tokenizers import CharTokenizer, Tokenizer, load_tokenizer
from .training import TrainConfig, Trainer, cleanup_distributed, init_distributed, open_prepared, prepare_corpus
from .training.checkpoint import claim_out_dir
from .zoo import RECIPES, list_models, load_model, pretrained, retrain_model, ship, verify, weights_dir

__all__ = ["build_parser", "main", "load_corpus"]

MAX_NEW_TOKENS = 1_000_000      # generation keeps every sample's tokens in memory: a sane ceiling


def _int(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in ``[low, high]`` (argparse turns the error into exit 2 and usage)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low or (high is not None and value > high):
            bound = f">= {low}" if high is None else f"in [{low}, {high}]"
            raise argparse.ArgumentTypeError(f"must be an integer {bound}, got {value}")
        return value
    return parse


SEED = _int(0, 2**63 - 1)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lmcore", description="Train, sample and manage the book's models.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{train,sample,prepare,zoo}")
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = commands.add_parser("train", formatter_class=fmt, help="train a character-level GPT on a corpus",
                            description="Train a character-level GPT on a text corpus and save checkpoints to --out.",
                            epilog="Then sample from it: python -m lmcore sample --ckpt OUT --prompt '...'")
    d = TrainConfig()
    g = p.add_argument_group("data")
    g.add_argument("--corpus", default="toy",
                   help="'toy' (the toy language), 'tinyshakespeare', or the path of a UTF-8 text file")
    g.add_argument("--tokenizer", default="char", choices=["char"], help="how text becomes token ids")
    g.add_argument("--val-fraction", type=float, default=0.1,
                   help="share of the text (its tail) kept for validation; the toy corpus has its own split")
    g.add_argument("--data", default=None,
                   help="a directory written by `python -m lmcore prepare` (instead of --corpus and --tokenizer)")
    g = p.add_argument_group("model")
    g.add_argument("--n-layer", type=_int(1), default=4, help="transformer blocks")
    g.add_argument("--n-head", type=_int(1), default=4, help="attention heads per block")
    g.add_argument("--n-embd", type=_int(1), default=128, help="embedding width (divisible by --n-head)")
    g.add_argument("--context-length", type=_int(1), default=128, help="context length in tokens")
    g.add_argument("--dropout", type=float, default=0.0, help="dropout probability")
    g = p.add_argument_group("optimisation")
    g.add_argument("--steps", type=_int(1), default=d.max_steps,
                   help="optimiser steps in the whole run; with --resume, a new length continues the learning "
                        "rate from where it was down to --min-lr at the new end")
    g.add_argument("--batch-size", type=_int(1), default=d.batch_size,
                   help="sequences per micro-step (global: split across processes under torchrun)")
    g.add_argument("--grad-accum", type=_int(1), default=d.grad_accum_steps, help="micro-steps per optimiser step")
    g.add_argument("--lr", type=float, default=d.lr, help="peak learning rate")
    g.add_argument("--min-lr", type=float, default=d.min_lr, help="learning rate at the end of the cosine")
    g.add_argument("--warmup", type=_int(0), default=d.warmup_steps, help="linear warm-up steps")
    g.add_argument("--weight-decay", type=float, default=d.weight_decay, help="AdamW weight decay (matrices only)")
    g.add_argument("--grad-clip", type=float, default=d.grad_clip, help="max gradient norm (0 = off)")
    g = p.add_argument_group("run")
    g.add_argument("--out", required=True, help="directory for checkpoints (last.pt, best.pt) and tokenizer.json")
    g.add_argument("--resume", action="store_true", help="continue the run saved in --out (same settings)")
    g.add_argument("--force", action="store_true",
                   help="start a fresh run in --out even if it holds another run's checkpoints (replacing them)")
    g.add_argument("--eval-interval", type=_int(1), default=d.eval_interval,
                   help="evaluate and checkpoint every N steps")
    g.add_argument("--eval-iters", type=_int(1), default=d.eval_iters, help="batches per loss estimate")
    g.add_argument("--log-interval", type=_int(1), default=d.log_interval,
                   help="read the loss back from the device and show it every N steps")
    g.add_argument("--seed", type=SEED, default=d.seed,
                   help="seed for the model init and the batches (0 <= seed < 2**63)")
    g.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    g.add_argument("--dtype", default=d.dtype, choices=["auto", "float32", "bfloat16", "float16"],
                   help="auto = bfloat16/float16 mixed precision on CUDA, float32 elsewhere")
    g.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the model (slow start, faster steps); default: on CUDA for models of "
                        ">= 5M parameters")
    g.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p = commands.add_parser("sample", formatter_class=fmt, help="continue a prompt with a trained or shipped model",
                            description="Continue a prompt with a model trained by `python -m lmcore train` "
                                        "(or from the zoo).")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--ckpt", help="run directory written by `python -m lmcore train` (or its last.pt / best.pt)")
    src.add_argument("--zoo", help="a model of lmcore.zoo.list_models(), e.g. toy-char (shipped weights)")
    p.add_argument("--best", action="store_true", help="use best.pt (lowest validation loss) instead of last.pt")
    p.add_argument("--prompt", default="\n", help="text to continue (every character must be in the vocabulary)")
    p.add_argument("--max-new-tokens", type=_int(1, MAX_NEW_TOKENS), default=200,
                   help="tokens to generate after the prompt")
    p.add_argument("--num-samples", type=_int(1), default=1, help="independent continuations")
    p.add_argument("--temperature", type=float, default=1.0, help="< 1 sharper, > 1 flatter; 0 = greedy")
    p.add_argument("--top-k", type=_int(1), default=None, help="sample only among the k most likely tokens")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling: smallest set with this much mass")
    p.add_argument("--min-p", type=float, default=None,
                   help="drop tokens less likely than min_p times the most likely one")
    p.add_argument("--seed", type=SEED, default=0, help="sampling seed (0 <= seed < 2**63)")
    p.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    p = commands.add_parser("prepare", formatter_class=fmt, help="tokenize a corpus once into uint16 .bin files",
                            description="Tokenize a corpus into DIR/train.bin and DIR/val.bin (uint16 ids), "
                                        "DIR/tokenizer.json and DIR/manifest.json (sha256 of each file).",
                            epilog="Then train from it: python -m lmcore train --data DIR --out RUN")
    p.add_argument("--corpus", required=True,
                   help="'toy' (the toy language), 'tinyshakespeare', or the path of a UTF-8 text file")
    p.add_argument("--tokenizer", default="char",
                   help="'char' (trained on the corpus) or the path of a tokenizer.json (at most 65,536 ids)")
    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="share of the text (its tail) kept for validation; the toy corpus has its own split")
    p.add_argument("--out", required=True, help="directory for the .bin files, tokenizer.json and manifest.json")
    p.add_argument("--force", action="store_true", help="replace a corpus prepared earlier in --out")
    p = commands.add_parser("zoo", help="list, verify, retrain or ship the book's shipped models",
                            description="The book's shipped models.")
    sub = p.add_subparsers(dest="zoo_command", required=True, metavar="{list,verify,retrain,ship}")
    sub.add_parser("list", help="name and description of every shipped model")
    v = sub.add_parser("verify", help="check shipped files against the manifest (exit 1 on a mismatch)")
    v.add_argument("names", nargs="*", help="models to check (default: all)")
    r = sub.add_parser("retrain", help="train a model's recipe on this machine and compare with the shipped one "
                                       "(exit 1 when outside the recipe's tolerance)")
    s = sub.add_parser("ship", help="maintainers: retrain and REPLACE the shipped weights (needs --force)")
    for q in (r, s):
        q.add_argument("name", help=f"one of {sorted(RECIPES)}")
        q.add_argument("--device", default="cpu", help="cpu, cuda or mps")
        q.add_argument("--no-progress", action="store_true", help="no progress bar")
        q.add_argument("--force", action="store_true", help="replace an existing output folder")
    r.add_argument("--out", default=None, help="folder for the retrained model (default: the lmcore cache)")
    return parser


def load_corpus(corpus: str) -> tuple[str, str]:
    """``(train_text, val_text)``: the toy language's own splits, or the whole text of a corpus name or
    file and ``""`` (the caller splits its tokens with :func:`lmcore.data.train_val_split`)."""
    if corpus == "toy":
        return data.toy_corpus("train"), data.toy_corpus("val")
    return data.load_text(corpus), ""


def _tokenizer(args: argparse.Namespace, text: str) -> Tokenizer:
    path = Path(args.out) / "tokenizer.json"
    if args.resume:
        if not path.is_file():
            raise FileNotFoundError(f"--resume: no {path}; is --out the directory of an earlier run?")
        return load_tokenizer(path)
    # Every character of the corpus (both splits), so validation text never holds an unknown one.
    return CharTokenizer().train(text)


def _split(tok: Tokenizer, train_text: str, val_text: str, val_fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids of both splits: the corpus's own, or the tail of its text (``val_text`` empty)."""
    if val_text:
        return torch.tensor(tok.encode(train_text)), torch.tensor(tok.encode(val_text))
    return data.train_val_split(tok.encode(train_text), val_fraction)


def _prepare(args: argparse.Namespace) -> int:
    try:
        train_text, val_text = load_corpus(args.corpus)
        if args.tokenizer == "char":
            tok: Tokenizer = CharTokenizer().train(train_text + val_text)
        else:
            tok = load_tokenizer(args.tokenizer)
        train_ids, val_ids = _split(tok, train_text, val_text, args.val_fraction)
        manifest = prepare_corpus(train_ids, val_ids, tok, args.out, force=args.force)
    except (ValueError, TypeError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"prepared {args.out}: {manifest['tokens']['train']:,} training and {manifest['tokens']['val']:,} "
          f"validation tokens (uint16), vocabulary {manifest['vocab_size']:,}\n"
          f"train from it: python -m lmcore train --data {args.out} --out RUN")
    return 0


def _record_tokenizer(trainer: Trainer, path: Path, resumed: bool) -> None:
    """Record tokenizer.json's sha256 in the run's checkpoints (``lmcore.load_model`` checks it); a
    resumed run must still have the tokenizer it was trained with."""
    digest, recorded = sha256_file(path), trainer.run_files.get(path.name)
    if resumed and recorded is not None and recorded != digest:
        raise ValueError(f"--resume: {path} is not the tokenizer this run was trained with (its sha256 differs "
                         "from the one last.pt records); restore the run's tokenizer.json, or start a fresh run")
    trainer.run_files[path.name] = digest


def _train(args: argparse.Namespace) -> int:
    if args.resume and args.force:
        print("error: --force starts a fresh run and --resume continues one; pass only one", file=sys.stderr)
        return 2
    info = init_distributed()
    try:
        if not args.resume and info.is_main:
            # Refuse before anything is written: an earlier run's tokenizer.json in --out is part of it.
            claim_out_dir(args.out, overwrite=args.force)
        train_ids: Any
        val_ids: Any
        if args.data is not None:
            prepared = open_prepared(args.data)
            tok = load_tokenizer(Path(args.out) / "tokenizer.json") if args.resume else prepared.tokenizer
            train_ids, val_ids = prepared.train, prepared.val
        else:
            train_text, val_text = load_corpus(args.corpus)
            tok = _tokenizer(args, train_text + val_text)
            train_ids, val_ids = _split(tok, train_text, val_text, args.val_fraction)
        config = TrainConfig(
            max_steps=args.steps, batch_size=args.batch_size, seq_len=args.context_length,
            grad_accum_steps=args.grad_accum, lr=args.lr, min_lr=args.min_lr, warmup_steps=args.warmup,
            weight_decay=args.weight_decay, grad_clip=args.grad_clip, eval_interval=args.eval_interval,
            eval_iters=args.eval_iters, log_interval=args.log_interval, seed=args.seed, device=args.device,
            dtype=args.dtype,
            compile=args.compile, out_dir=args.out, progress=not args.no_progress, overwrite=args.force)
        seed_everything(args.seed)
        model = GPT(GPTConfig(vocab_size=tok.vocab_size, context_length=args.context_length, n_layer=args.n_layer,
                              n_head=args.n_head, n_embd=args.n_embd, dropout=args.dropout))
        trainer = Trainer(model, config, train_ids, val_ids)
        tok_path = Path(args.out) / "tokenizer.json"
        if args.resume:
            trainer.resume()
        elif info.is_main:
            tok.save(tok_path)
        if args.resume or info.is_main:        # (in a fresh run only rank 0 has written the file)
            _record_tokenizer(trainer, tok_path, args.resume)
        if info.is_main:
            print(f"{model.num_params():,} parameters (non-embedding) | {len(train_ids):,} training tokens | "
                  f"device {trainer.device} | {info.world_size} process(es) | starting at step {trainer.step}")
        trainer.train()
    except (ValueError, TypeError, OSError) as e:      # OSError: FileExistsError, FileNotFoundError, offline
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        cleanup_distributed()
    if info.is_main:
        _, val = trainer.series("val_loss")
        print(f"done: step {trainer.step}, val loss {val[-1]:.4f} | checkpoint {Path(args.out) / 'last.pt'}\n"
              f"sample from it: python -m lmcore sample --ckpt {args.out} --prompt '...'")
    return 0


def _sample(args: argparse.Namespace) -> int:
    try:
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
        out = generate(model, idx, args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                       top_p=args.top_p, min_p=args.min_p, generator=gen)
    except (ValueError, TypeError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for i, row in enumerate(out.tolist()):
        if args.num_samples > 1:
            print(f"--- sample {i + 1} ---")
        print(tok.decode(row))
    return 0



def _zoo(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if getattr(args, "name", None) is not None and args.name not in RECIPES:
        parser.error(f"unknown model {args.name!r}; the known models are {sorted(RECIPES)}")
    if args.zoo_command == "list":
        for name, description in list_models().items():
            print(f"{name:18s} {description}")
        return 0
    if args.zoo_command == "verify":
        unknown = [n for n in args.names if n not in RECIPES]
        if unknown:
            parser.error(f"unknown model(s) {unknown}; the known models are {sorted(RECIPES)}")
        failed = 0
        for name in args.names or sorted(RECIPES):
            try:
                print(f"ok   {name}: {verify(name)}")
            except (OSError, ValueError) as e:
                failed += 1
                print(f"FAIL {name}: {e}", file=sys.stderr)
        return 1 if failed else 0
    try:
        if args.zoo_command == "retrain":
            report = retrain_model(args.name, device=args.device, progress=not args.no_progress, out=args.out,
                                   force=args.force)
            print(report)
            return 0 if report.within_tolerance else 1
        if not args.force:
            parser.error(f"ship replaces the shipped {args.name!r} in {weights_dir()}; pass --force to do so")
        folder = ship(args.name, device=args.device, force=True, progress=not args.no_progress)
        print(f"shipped {args.name} into {folder}")
        print("Re-execute every chapter that loads it, and re-read their prose.")
        return 0
    except (FileExistsError, ValueError) as e:
        parser.error(str(e))
    return 2



def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "train":
        return _train(args)
    if args.command == "sample":
        return _sample(args)
    if args.command == "prepare":
        return _prepare(args)
    return _zoo(args, parser)
