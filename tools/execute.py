"""Execute chapters in place, in a fresh kernel each, and store their outputs as the book shows them.

    python tools/execute.py chapters/08_sampling.ipynb [more notebooks ...]

The book test builds the HTML from the notebooks' stored outputs (tests/conftest.py), so after
editing a chapter, run this on it. It sets what `make book` sets for a chapter's kernel:
``LMCORE_BOOK=1`` (plotly figures are stored as the HTML fallback that loads the book's offline
plotly.js) and ``LMCORE_PROGRESS=0`` (no frozen progress bars in the outputs). The file keeps the
repository's JSON layout (indent 1, non-ASCII kept, trailing newline), so a diff shows only what
changed, and it is replaced atomically: an execution that fails leaves the notebook as it was.
If the file changes on disk while its kernel runs (an edit made meanwhile), nothing is written and
the command fails, since writing would silently undo that edit: run it again.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def execute(path: Path, timeout: int) -> float:
    """Run ``path`` top to bottom and write it back with its new outputs; returns the seconds taken."""
    import nbclient
    import nbformat

    before = path.read_bytes()
    nb = nbformat.reads(before.decode("utf-8"), as_version=4)
    start = time.perf_counter()
    nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}}).execute()
    seconds = time.perf_counter() - start
    text = nbformat.writes(nb)             # the repository's layout: indent 1, sorted keys, sources as lines
    text += "" if text.endswith("\n") else "\n"
    if path.read_bytes() != before:
        raise RuntimeError(f"{path} changed on disk while it ran; not overwritten (that would undo the edit). "
                           "Run tools/execute.py on it again.")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="+", type=Path, help="chapter notebooks (.ipynb) to execute in place")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds allowed per cell (default 1800)")
    args = parser.parse_args(argv)
    for nb in args.notebooks:
        if nb.suffix != ".ipynb" or not nb.is_file():
            parser.error(f"{nb}: not a notebook file (.ipynb)")
    os.environ.update(LMCORE_BOOK="1", LMCORE_PROGRESS="0")
    os.environ.setdefault("LMCORE_CACHE", str(ROOT / "_build" / "lmcore_cache"))
    shared = ROOT.parent / "shared" / "data"
    if (shared / "tinyshakespeare.txt").exists():
        os.environ.setdefault("LMCORE_LOCAL_DATA", str(shared))
    for nb in args.notebooks:
        print(f"{nb}: {execute(nb.resolve(), args.timeout):.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
