"""environment.yml (conda-forge, what Binder builds) stays in sync with pyproject.toml."""
from __future__ import annotations

import re

import tomllib
import yaml
from _book import ROOT

# PyPI name -> conda-forge name, where they differ.
CONDA_NAME = {"torch": "pytorch", "matplotlib": "matplotlib-base"}
# conda-only entries that pyproject does not list as runtime dependencies.
CONDA_ONLY = {"python", "pip", "jupyterlab", "jupyterlab-myst"}


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


# --- every chapter's imports are installed by both routes ----------------------------------------
def _chapter_imports() -> dict[str, set[str]]:
    """Top-level module name -> chapters importing it, from every code cell of every chapter
    (lines starting with % or ! are IPython syntax and skipped)."""
    import ast
    import json

    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "chapters").glob("*.ipynb")):
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            if cell["cell_type"] != "code":
                continue
            lines = "".join(cell["source"]).split("\n")
            tree = ast.parse("\n".join(line for line in lines if not line.lstrip().startswith(("%", "!"))))
            for node in ast.walk(tree):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else []
                for name in names:
                    found.setdefault(name.split(".")[0], set()).add(path.name)
    return found


def _third_party(modules: dict[str, set[str]]) -> dict[str, set[str]]:
    """The same, as installed distribution names, without the standard library and lmcore."""
    import importlib.metadata
    import sys

    dists = importlib.metadata.packages_distributions()
    out: dict[str, set[str]] = {}
    for module, chapters in modules.items():
        if module in sys.stdlib_module_names or module == "lmcore":
            continue
        assert module in dists, f"{sorted(chapters)} import {module!r}, which no installed distribution provides"
        for dist in dists[module]:
            out.setdefault(dist.lower(), set()).update(chapters)
    return out


def test_chapter_imports_are_derived_from_the_notebooks():
    imports = _chapter_imports()
    # a floor, so the parser cannot silently find nothing: chapter 3 checks BPE against HF tokenizers
    assert {"lmcore", "torch", "matplotlib", "tokenizers"} <= set(imports)
    assert "03_tokenization.ipynb" in imports["tokenizers"]


def test_every_chapter_import_is_provided_by_pyproject_and_environment_yml():
    needed = _third_party(_chapter_imports())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pip = {_split(s)[0] for s in project["dependencies"] + project["optional-dependencies"]["notebooks"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = {_split(e.split("=")[0] if re.match(r"^[^<>=]+=[^=]", e) else e)[0]
             for e in env["dependencies"] if isinstance(e, str)}
    missing_pip = {d: sorted(c) for d, c in needed.items() if d not in pip}
    assert not missing_pip, f"pyproject.toml (core or [notebooks]) lacks what chapters import: {missing_pip}"
    missing_conda = {d: sorted(c) for d, c in needed.items() if CONDA_NAME.get(d, d) not in conda}
    assert not missing_conda, f"environment.yml lacks what chapters import: {missing_conda}"
