"""Small helpers shared by the benchmark scripts: timing, a plain-text table, ``--json`` output.

Every benchmark measures peers side by side in the same run and reports ratios, so a slower or
busier machine shifts all numbers together and the ratios stay meaningful.

Typical use::

    parser = benchmark_parser("What this benchmark measures.")
    args = parser.parse_args()
    rows = [{"case": "small", "lmcore tok/s": 1.0e5, "hf tok/s": 0.9e5, "ratio": 1.11}]
    report(rows, args, title="train-step throughput", meta=machine_info())
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

__all__ = ["benchmark_parser", "machine_info", "time_fn", "format_table", "report"]


def benchmark_parser(description: str) -> argparse.ArgumentParser:
    """An ``argparse`` parser with the options every benchmark shares (``--json``, ``--device``)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    parser.add_argument("--device", default="cpu", help="device to run on: cpu (default), cuda, mps")
    return parser


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on: CPU count, torch version, threads, GPU name if any."""
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _sync(device: torch.device | str | None) -> None:
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_fn(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1,
            device: torch.device | str | None = None) -> dict[str, float]:
    """Call ``fn`` ``warmup`` times untimed, then ``repeats`` times; return seconds per call.

    Returns ``{"median": ..., "min": ..., "mean": ...}``.  On CUDA the device is synchronised
    around each call so that queued kernels are counted.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return {"median": statistics.median(times), "min": min(times), "mean": statistics.fmean(times)}


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.3g}"
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """Render a list of dicts as an aligned Markdown table (columns: every key, first-seen order)."""
    if not rows:
        return "(no results)"
    keys = list(dict.fromkeys(k for r in rows for k in r))
    cells = [[_cell(r.get(k, "")) for k in keys] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    line = lambda items: "| " + " | ".join(s.rjust(w) for s, w in zip(items, widths)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|"
    return "\n".join([line(keys), sep, *(line(c) for c in cells)])


def report(rows: Sequence[dict[str, Any]], args: argparse.Namespace, title: str,
           meta: dict[str, Any] | None = None) -> None:
    """Print ``rows`` as a table (with ``title`` and ``meta``), or as JSON when ``args.json``."""
    meta = meta if meta is not None else machine_info()
    if getattr(args, "json", False):
        print(json.dumps({"title": title, "meta": meta, "results": list(rows)}, indent=2))
        return
    print(f"## {title}")
    print(", ".join(f"{k}: {v}" for k, v in meta.items()))
    print()
    print(format_table(rows))
