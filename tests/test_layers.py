"""The layers the README draws are the layers the code has: every import between harness modules,
function-local ones included, points down (or within a layer), there is no import cycle, and no
function in harness/ is longer than 50 lines."""
import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HARNESS = ROOT / "harness"
MAX_FUNCTION_LINES = 50


def readme_layers() -> list[str]:
    """The subpackages in the README's Layout diagram, bottom layer first."""
    layout = ROOT.joinpath("README.md").read_text().split("## Layout", 1)[1]
    diagram = layout.split("```", 2)[1]
    names = re.findall(r"^\s*(\w+)\s{2,}", diagram, flags=re.M)
    return list(reversed([n for n in names if (HARNESS / n).is_dir()]))


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in HARNESS.rglob("*.py")}


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every harness module ``path`` imports, wherever the import statement is."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("harness")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("harness"):
            for alias in node.names:  # `from harness.x import y` names module harness.x.y when there is one
                sub = f"{node.module}.{alias.name}"
                found.append((node.lineno, sub if sub in MODULES else node.module))
    return found


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "harness"


def test_the_readme_draws_every_subpackage():
    assert set(readme_layers()) == {p.name for p in HARNESS.iterdir() if (p / "__init__.py").exists()}


def upward_imports(modules: dict[str, Path], layers: list[str]) -> list[str]:
    order = {name: rank for rank, name in enumerate(layers)}
    found = []
    for module, path in modules.items():
        if module == "harness":  # the facade submissions import from; it loads its names lazily
            continue
        for line, target in imports(path):
            if target == "harness" or order[layer(target)] > order[layer(module)]:
                found.append(f"{path.name}:{line} ({module}) imports {target}")
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (module -> modules it imports), or None."""
    state: dict[str, str] = {}

    def visit(module: str, trail: list[str]) -> list[str] | None:
        state[module] = "open"
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                path = trail + [module]
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target, trail + [module])):
                return cycle
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module, [])):
            return cycle
    return None


def test_every_import_points_down_or_within_its_layer():
    upward = upward_imports(MODULES, readme_layers())
    assert not upward, "imports against the README's layers:\n" + "\n".join(upward)


def test_there_is_no_import_cycle():
    cycle = find_cycle({m: {t for _, t in imports(p) if t in MODULES} for m, p in MODULES.items()})
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_function_is_longer_than_fifty_lines():
    long = [f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for path in MODULES.values() for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, "split these:\n" + "\n".join(long)


def test_the_checks_catch_what_they_look_for(tmp_path):
    """An upward import hidden in a function is found, and so is a cycle."""
    (tmp_path / "x.py").write_text("def f():\n    from harness.cli.commands import main\n")
    assert upward_imports({"harness.core.x": tmp_path / "x.py"}, readme_layers()) == [
        "x.py:2 (harness.core.x) imports harness.cli.commands"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"b"}}) == ["b", "c", "b"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
