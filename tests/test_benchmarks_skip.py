"""benchmarks/bench_gpu.py without a GPU: it measures nothing, says why, exits 0 and leaves RESULTS.md alone."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = ROOT / "benchmarks" / "bench_gpu.py"
RESULTS = ROOT / "benchmarks" / "RESULTS.md"


def run(*args: str) -> subprocess.CompletedProcess:
    env = os.environ | {"CUDA_VISIBLE_DEVICES": ""}          # no GPU even on a machine that has one
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env,
                          timeout=300, cwd=ROOT)


@pytest.mark.parametrize("args", [(), ("--device", "cpu")], ids=["default-cuda", "cpu-without-tiny"])
def test_bench_gpu_skips_cleanly_without_a_gpu(args):
    before = RESULTS.read_bytes()
    done = run(*args, "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)                         # the whole output is one JSON object
    assert out["skipped"] and out["results"] == {}
    assert ("CUDA" in out["skipped"]) if not args else ("--tiny" in out["skipped"])
    plain = run(*args)
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.startswith("bench_gpu: skipped: ")
    assert RESULTS.read_bytes() == before


def test_bench_gpu_refuses_a_missing_nanogpt_path(tmp_path):
    done = run("--nanogpt", str(tmp_path / "model.py"))
    assert done.returncode == 2 and "--nanogpt" in done.stderr
