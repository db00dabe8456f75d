"""The student edition of a chapter, as a transformation of its notebook (a dict in nbformat-4 JSON
form); tools/course.py writes it to disk, tools/grading.py and tools/nbgrader_export.py read the
same exercise structure.

In every code cell tagged ``solution``, each ``### BEGIN SOLUTION`` / ``### END SOLUTION`` region is
replaced: inside a function by ``raise NotImplementedError("Exercise <label>: not solved yet")`` (its
``def`` line and docstring stay), at the top level by a ``# your code here`` comment.  The written
solutions (``{solution}`` blocks, and everything between a ``{solution-start}`` and its
``{solution-end}`` gate except the solution cells) are removed; an exercise with a written solution
or without a check gets a markdown cell "**Your answer:** ..." in its place; claim cells about what
only a solution computes are dropped, and other cells that use a solution are wrapped so that they
report "skipped" until it is written; all outputs are cleared.  "Run All" runs the whole chapter: a
check of an unsolved exercise prints ``NOT SOLVED YET`` and the chapter goes on.
"""
from __future__ import annotations

import ast
import copy
import re

__all__ = ["SOLUTION_TAG", "BEGIN", "END", "stub_source", "make_student_notebook", "make_public_notebook"]

SOLUTION_TAG = "solution"
_FENCE = re.compile(r"^(?P<fence>`{3,}|:{3,})\{(?P<name>[\w-]+)\}(?P<arg>[^\n]*)$")
_GATE_START = re.compile(r"^\s*(`{3,}|:{3,})\{solution-start\}\s*(?P<label>[\w:.-]+)")
_GATE_END = re.compile(r"^\s*(`{3,}|:{3,})\{solution-end\}")
# The nbgrader-style lines around the part of a solution cell the student writes.
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
_CHECK_CELL = re.compile(r"^lmcore\.exercises\.check_\w+\(.*\);?$")
_ANSWER_SLOT = "\x00answer:"   # stands, inside one markdown string, where a written solution was


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _solution_blocks(markdown: str) -> tuple[str, list[str]]:
    """``markdown`` with every fenced ``{solution}`` directive (and its body) replaced by a line
    ``_ANSWER_SLOT`` + its label, and the labels in order."""
    out, labels, lines, i = [], [], markdown.split("\n"), 0
    while i < len(lines):
        m = _FENCE.match(lines[i].strip())
        if m and m.group("name") == "solution":
            fence = m.group("fence")
            labels.append(m.group("arg").strip())
            out.append(_ANSWER_SLOT + labels[-1])
            i += 1
            depth = 0
            while i < len(lines):
                stripped = lines[i].strip()
                inner = _FENCE.match(stripped)
                if inner and inner.group("fence") == fence:
                    depth += 1
                elif stripped == fence:
                    if depth == 0:
                        break
                    depth -= 1
                i += 1
            i += 1
            continue
        out.append(lines[i])
        i += 1
    return "\n".join(out), labels


def _strip_solution_blocks(markdown: str) -> str:
    """Remove every fenced ``{solution}`` directive (with its body) from a markdown string."""
    text = _solution_blocks(markdown)[0]
    kept = "\n".join(line for line in text.split("\n") if not line.startswith(_ANSWER_SLOT))
    return re.sub(r"\n{3,}", "\n\n", kept).strip("\n")


def stub_source(source: str, label: str) -> str:
    """A solution cell's student-edition source: each ``### BEGIN SOLUTION`` / ``### END SOLUTION``
    region replaced by ``raise NotImplementedError("Exercise <label>: not solved yet")`` when it is
    indented (a function's body: its ``def`` line and docstring stay) or by a ``# your code here``
    comment at the top level (an experiment that fills a results dict made outside the region).
    A cell without regions is all solution.  ValueError on unbalanced markers."""
    out: list[str] = []
    region: str | None = None          # the BEGIN line's indentation while inside a region
    for line in source.split("\n"):
        marker = line.strip()
        if marker == BEGIN:
            if region is not None:
                raise ValueError(f"Exercise {label}: a {BEGIN} inside another region")
            region = line[:len(line) - len(line.lstrip())]
            out.append(f'{region}raise NotImplementedError("Exercise {label}: not solved yet")' if region
                       else f"# Exercise {label}: your code here")
        elif marker == END:
            if region is None:
                raise ValueError(f"Exercise {label}: an {END} without its {BEGIN}")
            region = None
        elif region is None:
            out.append(line)
    if region is not None:
        raise ValueError(f"Exercise {label}: a {BEGIN} without its {END}")
    if not any(line.strip() in (BEGIN, END) for line in source.split("\n")):
        return f"# Exercise {label}: your code here"
    return "\n".join(out)


_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef,
           ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


def _stores(nodes) -> set[str]:
    """The names ``nodes`` bind in their own scope (not inside the functions, classes, lambdas and
    comprehensions they contain, whose names are their own)."""
    out: set[str] = set()
    todo = list(nodes)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
            todo += node.decorator_list
            continue
        if isinstance(node, _SCOPES):
            continue
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            out.add(node.id)
        elif isinstance(node, ast.alias):
            out.add((node.asname or node.name).split(".")[0])
        todo += ast.iter_child_nodes(node)
    return out


def _reads(node: ast.AST) -> set[str]:
    """The names ``node`` reads from outside: a function's parameters and locals are its own."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        args = node.args
        params = {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg] if a}
        body = node.body if isinstance(node.body, list) else [node.body]
        outer = [*args.defaults, *(d for d in args.kw_defaults if d), *getattr(node, "decorator_list", [])]
        inner = set().union(*(_reads(n) for n in body)) - params - _stores(body)
        return inner | set().union(*(_reads(n) for n in outer))
    if isinstance(node, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
        targets = _stores(g.target for g in node.generators)
        return set().union(*(_reads(n) for n in ast.iter_child_nodes(node))) - targets
    if isinstance(node, ast.Name):
        return {node.id} if not isinstance(node.ctx, ast.Store) else set()
    return set().union(*(_reads(n) for n in ast.iter_child_nodes(node)))


def _names(source: str) -> tuple[set[str], set[str]]:
    """(the names a cell binds at the top level, the names it reads that it does not bind); empty
    sets if it does not parse (a cell with IPython magics)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set(), set()
    bound = _stores(tree.body)
    return bound, _reads(tree) - bound


def _is_check(source: str) -> bool:
    return bool(_CHECK_CELL.match(source.strip()))


def _guarded(source: str) -> str:
    """A cell that uses an exercise's solution, made to run on in the student edition until it is solved."""
    body = "\n".join(("    " + line) if line.strip() else line for line in source.split("\n"))
    return ("try:  # this cell uses your solution of an exercise above\n" + body + "\n"
            "except (NotImplementedError, NameError) as err:\n"
            '    print(f"skipped until the exercise above is solved ({type(err).__name__}: {err})")')


def _answer_cell(label: str) -> dict:
    return {"cell_type": "markdown", "id": re.sub(r"[^\w-]", "-", f"answer-{label}")[:64], "source": "**Your answer:** ...",
            "metadata": {"tags": ["answer"], "exercise": label}}


def _exercise_kinds(cells: list[dict]) -> tuple[list[str], set[str], set[str]]:
    """(every exercise label in order, the labels with a code solution gate, those with a check cell)."""
    rows = _exercise_rows(cells)
    labels = [r["label"] for r in rows]
    gated = {m.group("label") for c in cells if c["cell_type"] == "markdown" for m in [_GATE_START.match(_source(c))] if m}
    return labels, gated, {r["label"] for r in rows if r["check"]}


def _without_solutions(nb: dict, stub: bool, clear_outputs: bool) -> dict:
    """Copy of ``nb`` without its solutions: the ``{solution}`` blocks, the gates and everything between
    a ``{solution-start}`` and its ``{solution-end}`` except the code cells tagged ``solution``.  Those
    become stubs (``stub=True``, see :func:`stub_source`) or are dropped.  With ``stub``, the copy is the
    student edition: an exercise with a written solution or without a check gets a markdown answer
    cell (tag ``answer``) where its solution was, claim cells that read what only a solution computes
    are dropped, and other cells that do are guarded so that Run All goes on to the end."""
    if not isinstance(nb, dict) or "cells" not in nb:
        raise TypeError("nb must be a notebook dict (json.load of an .ipynb file)")
    nb = copy.deepcopy(nb)
    labels, gated, checked = _exercise_kinds(nb["cells"])
    answered: set[str] = set()
    # tainted: what a later cell cannot use in the student edition (a stub function, a name only a
    # solution region binds); defined: what the cells kept so far bind for sure
    cells, label, in_gate, n_stub, tainted, defined = [], None, False, 0, set(), set()
    for cell in nb["cells"]:
        src = _source(cell)
        if cell["cell_type"] == "markdown":
            gate = _GATE_START.match(src)
            if gate:
                label, in_gate = gate.group("label"), True
                continue
            if _GATE_END.match(src):
                in_gate = False
                if stub and label and label not in checked and label not in answered:
                    answered.add(label)
                    cells.append(_answer_cell(label))
                continue
            if in_gate:
                continue
            text, written = _solution_blocks(src)
            pending = [x for x in re.findall(r"\{exercise\}[^\n]*\n:label:\s*([\w:.-]+)", src)
                       if x not in gated and x not in written]
            parts = re.split(r"^" + re.escape(_ANSWER_SLOT) + r"([^\n]*)$", text, flags=re.M)
            for k, part in enumerate(parts):
                part_label = part if k % 2 else None      # re.split puts the captured labels at odd places
                if part_label is None:
                    part = re.sub(r"\n{3,}", "\n\n", part).strip("\n")
                    if part.strip():
                        piece = {**copy.deepcopy(cell), "source": part}
                        if k and "id" in cell:           # a cell split in two needs a second id
                            piece["id"] = f"{cell['id']}-{k}"[-64:]
                        cells.append(piece)
                elif stub and part_label not in answered:
                    answered.add(part_label)
                    cells.append(_answer_cell(part_label))
            for x in pending:
                if stub and x not in answered:
                    answered.add(x)
                    cells.append(_answer_cell(x))
            continue
        if cell["cell_type"] != "code":
            cells.append(cell)
            continue
        if clear_outputs:
            cell["outputs"], cell["execution_count"] = [], None
        tags = cell.get("metadata", {}).get("tags", [])
        if SOLUTION_TAG in tags:
            if not stub:
                continue
            n_stub += 1
            cell["source"] = stub_source(src, label or f"{n_stub}")
            cell["outputs"], cell["execution_count"] = [], None
            cell["metadata"]["tags"] = [t for t in tags if t != SOLUTION_TAG] + ["exercise"]
            bound = _names(cell["source"])[0]
            stubbed = {n.name for n in ast.parse(cell["source"]).body if isinstance(n, ast.FunctionDef)
                       and any(isinstance(s, ast.Raise) for s in n.body)}
            tainted |= stubbed | (_names(src)[0] - bound - defined)
            defined |= bound - stubbed
            cells.append(cell)
            continue
        if in_gate:              # the rest of a written solution: its claims, its extra cells
            continue
        bound, read = _names(src)
        if stub and not _is_check(src) and read & tainted:
            if "claim" in tags:  # it asserts the numbers of a solution the student edition does not show
                continue
            cell["source"] = _guarded(src)
            tainted |= bound - defined
        else:
            tainted -= bound
            defined |= bound
        cells.append(cell)
    nb["cells"] = cells
    return nb


def make_student_notebook(nb: dict) -> dict:
    """The student edition of one notebook (a dict in nbformat 4 JSON form): solutions become
    stubs that raise ``NotImplementedError``, written solutions disappear, outputs are cleared."""
    return _without_solutions(nb, stub=True, clear_outputs=True)


def make_public_notebook(nb: dict) -> dict:
    """The chapter as published without solutions: solution cells and written solutions removed,
    every other cell and its stored output kept (the book is built from them, not re-executed)."""
    return _without_solutions(nb, stub=False, clear_outputs=False)


def _exercise_rows(cells: list[dict]) -> list[dict]:
    """Every exercise of a notebook's ``cells`` in order: label, title and its check cells' functions
    (``checks``; ``check`` is the first or "").  An exercise owns the check cells up to the next
    exercise; of several exercises in one markdown cell, only the last can own any."""
    rows: list[dict] = []
    for cell in cells:
        src = _source(cell)
        if cell["cell_type"] == "markdown":
            for m in re.finditer(r"\{exercise\}\s*([^\n]*)\n:label:\s*([\w:.-]+)", src):
                rows.append({"label": m.group(2), "title": m.group(1).strip(), "checks": []})
        elif cell["cell_type"] == "code" and rows and _is_check(src):
            rows[-1]["checks"].append(re.match(r"lmcore\.exercises\.(check_\w+)", src.strip()).group(1))
    return [{**r, "check": r["checks"][0] if r["checks"] else ""} for r in rows]
