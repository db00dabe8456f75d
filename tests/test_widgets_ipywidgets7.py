"""The sampling explorer displays under ipywidgets 7.7.1 and IPython 7.34, Colab's versions.

ipywidgets 7 widgets display through ``_ipython_display_`` and have no ``_repr_mimebundle_``; an
explorer that only forwarded ``_repr_mimebundle_`` to its box printed an ``AttributeError``
traceback there instead of the widget. The project's own environment has ipywidgets 8, so this test
runs a script in a separate virtual environment, ``_build/ipyw7``, with lmcore taken from this
checkout (``PYTHONPATH``). It is skipped, saying why, when that environment is absent.

Create the environment from the repository root (a few minutes; the torch pin installs the local
CPU wheel, an unpinned torch would download a CUDA build)::

    python3 -m venv _build/ipyw7
    _build/ipyw7/bin/python -m pip install torch==2.13.0
    _build/ipyw7/bin/python -m pip install ipywidgets==7.7.1 ipython==7.34.0 numpy tqdm regex safetensors matplotlib scipy
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYTHON = ROOT / "_build" / "ipyw7" / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")

# Runs inside the ipywidgets-7 environment: the display path a notebook takes, in a real
# InteractiveShell (the last expression of a cell, then display()), with the outputs captured.
SCRIPT = r'''
import ipywidgets, IPython, torch
assert ipywidgets.__version__.startswith("7."), ipywidgets.__version__
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from lmcore import GPT, CharTokenizer, GPTConfig
from lmcore.widgets import SamplingExplorer

shell = InteractiveShell.instance()
tok = CharTokenizer().train("\n .abcdeghlot")
torch.manual_seed(0)
model = GPT(GPTConfig(vocab_size=tok.vocab_size, context_length=32, n_layer=1, n_head=2, n_embd=16)).eval()
ui = SamplingExplorer(model, tok, prompt="the cat", max_new_tokens=8, n_samples=3, is_valid=lambda s: "a" in s)
shell.user_ns["ui"] = ui
with capture_output() as cap:
    shell.run_cell("ui")                            # the last expression of a cell
    shell.run_cell("from IPython.display import display; display(ui)")
views = [o.data["application/vnd.jupyter.widget-view+json"] for o in cap.outputs
         if "application/vnd.jupyter.widget-view+json" in o.data]
assert len(views) == 2 and all(v["model_id"] == ui.widget.model_id for v in views), cap.outputs
assert "Traceback" not in cap.stdout + cap.stderr and "Error" not in cap.stdout + cap.stderr, cap.stdout + cap.stderr
before = ui.result
ui.temperature.value, ui.scale.value = 0.4, "log probability"      # the observers fire under ipywidgets 7 too
assert ui.result is not before and ui.result.settings["temperature"] == 0.4 and "ln p" in ui.chart.value
assert ui.continuation.value.count("valid") == 3
print("OK", ipywidgets.__version__, IPython.__version__)
'''


def test_explorer_displays_under_ipywidgets_7():
    if not PYTHON.exists():
        pytest.skip(f"no ipywidgets-7 environment at {PYTHON.parent.parent}: create it as this module's docstring says")
    version = subprocess.run([str(PYTHON), "-c", "import ipywidgets; print(ipywidgets.__version__)"],
                             capture_output=True, text=True, timeout=120)
    if version.returncode != 0 or not version.stdout.startswith("7."):
        pytest.skip(f"{PYTHON} does not provide ipywidgets 7 ({(version.stdout or version.stderr).strip()[-200:]}); "
                    "recreate it as this module's docstring says")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LMCORE_PROGRESS": "0", "LMCORE_THREADS": "1"}
    run = subprocess.run([str(PYTHON), "-c", SCRIPT], capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert run.stdout.strip().splitlines()[-1].startswith("OK 7.7.1"), run.stdout
