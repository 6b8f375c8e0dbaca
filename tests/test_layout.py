"""The package layout of ../shared/ARCHITECTURE.md, checked on the source with `ast`.

Imports flow one way: data, lm -> store -> search, recommend -> engine -> api, jobs -> cli,
with the shared helpers at the root below everything. `search` and `recommend` never import
each other (nor `data` and `lm`, nor `api` and `jobs`). Every import counts: top-level,
inside functions (lazy) and under `TYPE_CHECKING`. The module graph has no cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "shoplm"
ROOT_HELPERS = {"config", "errors", "atomic", "metrics", "report", "replica", "device", "progress"}
LAYER = {"": 0, "data": 1, "lm": 1, "store": 2, "search": 3, "recommend": 3, "engine": 4, "api": 5, "jobs": 5, "cli": 6}


def module_names(package: Path) -> dict[str, Path]:
    """Dotted name -> file for every module of the package (`a.b` for a/b.py, `a` for a/__init__.py)."""
    out = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(package.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def imports(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """The package's modules that `path` imports, anywhere in the file."""
    top = name.split(".")[0]
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from a import b` names the submodule a.b when there is one, else a itself
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `import a.b.c` where c is an attribute
                target = target.rpartition(".")[0]
            if target.split(".")[0] == top and target != name:
                found.add(target)
    return found


def area(module: str) -> str:
    """The role folder of a module: "search" for shoplm.search.index, "" for a root helper."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYER) else ""


def violations(package: Path) -> list[str]:
    """Every import against the direction, every root module that is not a shared helper,
    and every cycle, each naming the modules."""
    modules = module_names(package)
    graph = {name: imports(path, name, modules) for name, path in modules.items()}
    problems = []
    for name in sorted(modules):
        parts = name.split(".")
        if len(parts) == 2 and parts[1] not in LAYER and parts[1] not in ROOT_HELPERS:
            problems.append(f"{name} sits at the package root, which holds only the shared helpers "
                            f"({', '.join(sorted(ROOT_HELPERS))}); move it into its role folder")
        if area(name) not in LAYER:
            problems.append(f"{name} is in no known role folder ({', '.join(k for k in LAYER if k)})")
            continue
        for target in sorted(graph[name]):
            src, dst = area(name), area(target)
            if src == dst or dst not in LAYER:
                continue
            if LAYER[dst] >= LAYER[src]:
                how = "across" if LAYER[dst] == LAYER[src] else "upward"
                problems.append(f"{name} imports {target}: {how} ({src or 'root'} -> {dst or 'root'}); "
                                "imports flow data, lm -> store -> search, recommend -> engine -> api, jobs -> cli")
    problems += [f"import cycle: {' -> '.join(cycle)}" for cycle in cycles(graph)]
    return problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a closed path) per strongly connected component with more than one module."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(node: str) -> None:  # Tarjan's algorithm; the graph is ~70 modules, recursion is fine
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                out.append(closed_path(graph, set(component)))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return out


def closed_path(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A path start -> ... -> start inside one strongly connected component."""
    start = min(component)
    path, seen, node = [start], {start}, start
    while True:
        nxt = sorted(graph[node] & component)
        back = start if start in nxt else next((n for n in nxt if n not in seen), nxt[0])
        path.append(back)
        if back == start or back in seen:
            return path
        seen.add(back)
        node = back


def test_imports_flow_one_way_and_have_no_cycle():
    problems = violations(PACKAGE)
    assert not problems, "\n".join(problems)


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "shoplm" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "shoplm"


LEGAL = {
    "__init__.py": "", "errors.py": "", "data/__init__.py": "", "data/records.py": "from shoplm.errors import X\n",
    "store/__init__.py": "from shoplm.store.base import Store\n", "store/base.py": "from shoplm.data.records import Item\n",
    "search/__init__.py": "", "search/index.py": "from shoplm import errors\nfrom shoplm.store import open_store\n",
    "engine/__init__.py": "", "engine/engine.py": "def f():\n    from shoplm.search.index import X\n",
}


def test_the_checker_passes_a_legal_tree(tmp_path):
    assert violations(write(tmp_path, LEGAL)) == []


@pytest.mark.parametrize(("module", "text", "expected"), [
    ("store/base.py", "def f():\n    from shoplm.engine.engine import Engine\n",
     "shoplm.store.base imports shoplm.engine.engine: upward (store -> engine)"),
    ("search/index.py", "from shoplm.recommend.model import UserModel\n",
     "shoplm.search.index imports shoplm.recommend.model: across (search -> recommend)"),
    ("errors.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from shoplm.data import records\n",
     "shoplm.errors imports shoplm.data.records: upward (root -> data)"),
    ("engine/other.py", "from shoplm.engine.engine import f\n", None),
    ("engine/engine.py", "from shoplm.engine import other\n", None),
])
def test_the_checker_names_both_modules_of_a_wrong_import(tmp_path, module, text, expected):
    files = dict(LEGAL)
    if module == "engine/engine.py":  # with engine/other.py importing engine.py back: a cycle
        files["engine/other.py"] = "from shoplm.engine.engine import f\n"
    if module == "search/index.py":
        files["recommend/__init__.py"] = ""
        files["recommend/model.py"] = ""
    files[module] = text
    found = violations(write(tmp_path, files))
    if expected is None:
        if module == "engine/other.py":
            assert found == []  # an import within one folder is fine
        else:
            assert found == ["import cycle: shoplm.engine.engine -> shoplm.engine.other -> shoplm.engine.engine"]
    else:
        assert any(problem.startswith(expected) for problem in found), found


def test_the_checker_refuses_a_flat_module_at_the_root(tmp_path):
    found = violations(write(tmp_path, {**LEGAL, "search_train.py": ""}))
    assert found and found[0].startswith("shoplm.search_train sits at the package root")
