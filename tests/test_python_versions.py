"""The package under the newest Python that Colab ships (3.13).

Colab runs Python 3.13, but the only CPU wheel of torch this machine can install is for 3.11: PyPI's
torch for 3.13 on Linux is the CUDA build, with several GB of NVIDIA packages. So the check here is
the part that needs no torch: every source file compiles under 3.13, and ruff finds nothing when it
targets 3.13. Skips where no 3.13 interpreter is installed.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("lmcore", "tools", "tests", "benchmarks")


def _python313() -> str | None:
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates = sorted(str(p) for p in pyenv.glob("3.13*/bin/python3.13"))    # pyenv's shim needs a set version
    found = shutil.which("python3.13")
    candidates += [found] if found and "shims" not in found else []
    return candidates[0] if candidates else None


PY313 = _python313()
needs_313 = pytest.mark.skipif(PY313 is None, reason="no Python 3.13 interpreter on this machine")

COMPILE_ALL = """
import sys, pathlib
bad = []
for top in sys.argv[1:]:
    for f in sorted(pathlib.Path(top).rglob("*.py")):
        try:
            compile(f.read_text(encoding="utf-8"), str(f), "exec")     # no .pyc is written
        except SyntaxError as e:
            bad.append(f"{f}:{e.lineno}: {e.msg}")
print(sys.version.split()[0], len(bad))
print("\\n".join(bad))
"""


@needs_313
def test_every_source_file_compiles_under_python_313():
    out = subprocess.run([PY313, "-W", "error::SyntaxWarning", "-c", COMPILE_ALL, *SOURCES], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout.splitlines()
    version, n_bad = out[0].split()
    assert version.startswith("3.13") and n_bad == "0", "\n".join(out)


def test_ruff_finds_nothing_when_targeting_python_313():
    # The project's rules, except pyupgrade (it suggests 3.12 syntax; the floor is 3.10) and import
    # order (which modules count as stdlib depends on the target version).
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "--target-version", "py313", "--extend-ignore", "UP,I",
                           *SOURCES], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
