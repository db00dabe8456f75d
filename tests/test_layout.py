"""The package's layout rules (contributing.md, "Where code goes"), read from the source with ``ast``.

- Each folder of ``lmcore/`` is a layer; a module imports only from its own layer or earlier ones.
- No import circles between modules, counting imports inside functions (not ``TYPE_CHECKING`` ones).
- No module over 400 lines; no submodule hidden behind a function of the same name.
- Each teaching module's docstring names the chapter that teaches it.
- Chapters import only public names (listed in a module's ``__all__``, or a submodule).
"""
from __future__ import annotations

import ast
import importlib
import json
import pkgutil
from pathlib import Path

import pytest

import lmcore

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "lmcore"
# The layers, first to last. Names on one line form one layer (they may import each other).
LAYERS = [
    ["_version", "_io", "_checks"],
    ["runtime", "claims"],
    ["data"],
    ["tokenizers"],
    ["models"],
    ["decoding"],
    ["training"],
    ["scaling"],
    ["alignment"],
    ["zoo"],
    ["widgets", "exercises"],
    ["cli"],
    ["__main__", "__init__"],
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}
TEACHING = ("data", "tokenizers", "models", "decoding", "training", "scaling", "alignment", "zoo", "widgets")


def _modules() -> dict[str, Path]:
    """Dotted name -> file, for every module of the package."""
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, (ast.Name, ast.Attribute)) and ast.unparse(node.test).endswith("TYPE_CHECKING")


def _imports(name: str, path: Path) -> set[str]:
    """The lmcore modules ``name`` imports at run time (anywhere in the file)."""
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    visit(sub)
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names if a.name.split(".")[0] == "lmcore")
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[:len(base) - child.level + 1]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                if target.split(".")[0] != "lmcore":
                    continue
                for alias in child.names:      # `from . import x` imports the submodule x when there is one
                    sub = f"{target}.{alias.name}"
                    found.add(sub if sub in MODULES else target)
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    found.discard(name)
    return {m for m in found if m in MODULES}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _layer(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def test_every_module_belongs_to_a_layer():
    assert {_layer(m) for m in MODULES} <= set(RANK), {_layer(m) for m in MODULES} - set(RANK)


def test_layers_import_only_from_earlier_layers():
    bad = [f"{src} imports {dst}" for src, targets in GRAPH.items() for dst in sorted(targets)
           if RANK[_layer(dst)] > RANK[_layer(src)]]
    assert not bad, "imports from a later layer:\n" + "\n".join(bad)


def test_no_import_circles():
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def walk(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(GRAPH[m]):
            if state.get(n) == 1:
                cycles.append(stack[stack.index(n):] + [n])
            elif n not in state:
                walk(n)
        stack.pop()
        state[m] = 2

    for m in sorted(GRAPH):
        if m not in state:
            walk(m)
    assert not cycles, "import circles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_layering_check_catches_an_upward_import(tmp_path, monkeypatch):
    """The check above must be able to fail: a models module that imports decoding is reported."""
    fake = tmp_path / "lmcore" / "models" / "bad.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("from ..decoding import generate\n\ndef f():\n    from .. import zoo\n")
    monkeypatch.setitem(MODULES, "lmcore.models.bad", fake)
    assert _imports("lmcore.models.bad", fake) == {"lmcore.decoding", "lmcore.zoo"}
    assert RANK[_layer("lmcore.decoding")] > RANK[_layer("lmcore.models.bad")]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_are_at_most_400_lines(name):
    n = len(MODULES[name].read_text(encoding="utf-8").splitlines())
    assert n <= 400, f"{MODULES[name].relative_to(ROOT)} has {n} lines; split it by topic"


def test_no_submodule_is_shadowed_by_a_name_of_its_package():
    for info in pkgutil.walk_packages(lmcore.__path__, "lmcore."):
        parent_name, _, child = info.name.rpartition(".")
        parent = importlib.import_module(parent_name)
        module = importlib.import_module(info.name)
        value = getattr(parent, child, module)
        assert value is module, f"{parent_name}.{child} is {value!r}, not the module {info.name}"


@pytest.mark.parametrize("name", sorted(m for m in MODULES if _layer(m) in TEACHING))
def test_teaching_modules_name_their_chapter(name):
    doc = ast.get_docstring(ast.parse(MODULES[name].read_text(encoding="utf-8"))) or ""
    assert "chapter" in doc.lower(), f"{name}: say in the docstring which chapter teaches it"


def _chapter_names() -> list[tuple[str, str, str]]:
    """(chapter, module, name) for every ``from lmcore... import name`` and ``lmcore.a.b`` in the chapters."""
    found = []
    for nb_path in sorted((ROOT / "chapters").glob("*.ipynb")):
        nb = json.loads(nb_path.read_text(encoding="utf-8"))
        for cell in nb["cells"]:
            if cell["cell_type"] != "code":
                continue
            src = "".join(cell["source"])
            src = "\n".join(line for line in src.splitlines() if not line.lstrip().startswith(("%", "!")))
            for node in ast.walk(ast.parse(src)):
                if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "lmcore":
                    found += [(nb_path.stem, node.module, a.name) for a in node.names]
                elif isinstance(node, ast.Attribute):
                    chain = []
                    x: ast.AST = node
                    while isinstance(x, ast.Attribute):
                        chain.append(x.attr)
                        x = x.value
                    if isinstance(x, ast.Name) and x.id == "lmcore":
                        chain.reverse()
                        found += [(nb_path.stem, ".".join(["lmcore", *chain[:i]]), chain[i]) for i in range(len(chain))]
    return sorted(set(found))


def test_chapters_import_only_public_names():
    bad = []
    for chapter, module_name, name in _chapter_names():
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue        # an attribute of a class or function, not a module: checked one step up
        public = set(getattr(module, "__all__", ())) | {m.name for m in pkgutil.iter_modules(getattr(module, "__path__", []))}
        if name.startswith("_") or name not in public:
            bad.append(f"{chapter}: {module_name}.{name}")
    assert not bad, "chapters use names that are not public (add them to __all__ or use the public name):\n" + \
        "\n".join(bad)


def test_every_name_in_all_exists():
    for info in [*pkgutil.walk_packages(lmcore.__path__, "lmcore."), None]:
        name = "lmcore" if info is None else info.name
        if name.endswith("__main__"):
            continue
        module = importlib.import_module(name)
        missing = [n for n in getattr(module, "__all__", ()) if not hasattr(module, n)]
        assert not missing, f"{name}.__all__ lists names it does not define: {missing}"
