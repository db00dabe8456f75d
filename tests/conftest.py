"""Shared fixtures: paths, and the built book (built once per session, only by tests that need it)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

# The unit tests use tiny models, for which extra threads only add contention (and on a loaded
# machine a second thread can slow a test a hundredfold). Notebooks and benchmarks are unaffected.
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def built_book() -> Path:
    """Build the book exactly as `make book` does (warnings are errors) and return _build/html.

    Chapters are executed through the jupyter-cache, so a book built moments ago by `make book`
    with unchanged notebooks is reused rather than executed again.
    """
    jb = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(jb), "build", str(ROOT), "-W", "-n", "--keep-going"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=os.environ.copy())
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-60:])
        pytest.fail(f"the book build failed (exit {proc.returncode}):\n{tail}")
    return HTML
