"""environment.yml (conda-forge, what Binder builds) stays in sync with pyproject.toml."""
from __future__ import annotations

import re

import tomllib
import yaml
from _book import ROOT

# PyPI name -> conda-forge name, where they differ.
CONDA_NAME = {"torch": "pytorch", "matplotlib": "matplotlib-base"}
# conda-only entries that pyproject does not list as runtime dependencies.
CONDA_ONLY = {"python", "pip", "jupyterlab"}


def _split(spec: str) -> tuple[str, str]:
    m = re.match(r"^\s*([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*(.*)$", spec)
    return m.group(1).lower(), m.group(3).replace(" ", "")


def test_environment_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {}
    for spec in project["dependencies"] + project["optional-dependencies"]["notebooks"]:
        name, version = _split(spec)
        wanted[CONDA_NAME.get(name, name)] = version
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge"]
    conda = {}
    for entry in env["dependencies"]:
        if isinstance(entry, str):
            name, version = _split(entry.replace("=", "==", 1) if re.match(r"^[^<>=]+=[^=]", entry) else entry)
            conda[name] = version
        else:
            assert entry.get("pip") == ["-e ."], "the pip section installs lmcore itself, nothing else"
    missing = {n: v for n, v in wanted.items() if n not in conda}
    assert not missing, f"environment.yml lacks {missing} (conda-forge names)"
    differ = {n: (v, conda[n]) for n, v in wanted.items() if conda[n] != v}
    assert not differ, f"version bounds differ between pyproject.toml and environment.yml: {differ}"
    extra = set(conda) - set(wanted) - CONDA_ONLY
    assert not extra, f"environment.yml has packages pyproject.toml does not: {extra}"
    assert conda["python"] == "==3.11"
