"""Shared fixtures: paths, and the built book (built once per session, only by tests that need it)."""
from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

# The unit tests use tiny models, for which extra threads only add contention (and on a loaded
# machine a second thread can slow a test a hundredfold). Notebooks and benchmarks are unaffected.
torch.set_num_threads(1)

# torch.compile's on-disk cache (inductor's precompiled C++ headers) is not keyed by the CPU kernel
# setting: code generated under ATEN_CPU_CAPABILITY=default against a header cached by a native run
# fails to build ("'at::vec' has not been declared"). Each kernel setting gets its own cache.
if os.environ.get("ATEN_CPU_CAPABILITY"):
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", os.path.join(
        tempfile.gettempdir(), f"torchinductor_{getpass.getuser()}_{os.environ['ATEN_CPU_CAPABILITY']}"))

ROOT = Path(__file__).resolve().parents[1]
# Repository tooling (the student edition, the instructor book, grading) lives in tools/, outside
# the package: the tests import it from there (`import course`).
sys.path.insert(0, str(ROOT / "tools"))


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


def build_book(out: Path | None = None) -> Path:
    """Build the book with warnings as errors, from the notebooks' stored outputs, and return the
    HTML folder.

    `make test` first runs every chapter under nbval (which executes it in a fresh kernel and
    compares its checked outputs with the stored ones), so the book test does not execute the
    chapters a second time: it builds from the outputs nbval has just verified.  `make book`
    itself executes every chapter (through the jupyter-cache).
    """
    import yaml

    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    cfg["execute"]["execute_notebooks"] = "off"
    out = out or ROOT / "_build" / "test"
    out.mkdir(parents=True, exist_ok=True)
    config = out / "_config.yml"
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    jb = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(jb), "build", str(ROOT), "--config", str(config), "--path-output", str(out), "-W", "-n", "--keep-going"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=os.environ.copy())
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-60:])
        pytest.fail(f"the book build failed (exit {proc.returncode}):\n{tail}")
    html = out / "_build" / "html"
    # Sphinx copies the static files only when a page is rebuilt: after an edit of the JavaScript or
    # CSS alone, an incremental build would keep the old copies.
    shutil.copytree(ROOT / "_assets", html / "_static", dirs_exist_ok=True)
    return html


@pytest.fixture(scope="session")
def built_book() -> Path:
    return build_book()
