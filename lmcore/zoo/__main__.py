"""The model zoo from the shell: ``python -m lmcore.zoo --help``.

    python -m lmcore.zoo list                 the shipped models
    python -m lmcore.zoo verify               check every shipped file against the manifest
    python -m lmcore.zoo retrain toy-char     train the recipe here; compare with the shipped model
    python -m lmcore.zoo ship toy-char --force   (maintainers) replace the shipped weights
"""
from __future__ import annotations

import argparse
import sys

from . import RECIPES, list_models, retrain_model, ship, verify, weights_dir

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lmcore.zoo", description="The book's shipped models.")
    sub = p.add_subparsers(dest="command", required=True)
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
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "name", None) is not None and args.name not in RECIPES:
        parser.error(f"unknown model {args.name!r}; the known models are {sorted(RECIPES)}")
    if args.command == "list":
        for name, description in list_models().items():
            print(f"{name:18s} {description}")
        return 0
    if args.command == "verify":
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
        if args.command == "retrain":
            report = retrain_model(args.name, device=args.device, progress=not args.no_progress, out=args.out,
                                   force=args.force)
            print(report)
            return 0 if report.within_tolerance else 1
        if not args.force:
            parser.error(f"ship replaces the shipped {args.name!r} in {weights_dir()}; pass --force to do so")
        print(f"shipped {args.name} into {ship(args.name, device=args.device, force=True, progress=not args.no_progress)}")
        print("Re-execute every chapter that loads it, and re-read their prose.")
        return 0
    except (FileExistsError, ValueError) as e:
        parser.error(str(e))
    return 2


if __name__ == "__main__":
    sys.exit(main())
