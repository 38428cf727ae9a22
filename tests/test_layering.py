"""The import contract of ARCHITECTURE.md, checked on the source: `cli → pipeline → {data, models, train,
evaluate, analysis} → report` (with `serve`, the dashboard, beside `grid` under `cli`), stages do not import
each other, shared modules import no layer, and the module table lists every module file; a module's
layer is its package's."""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "tunescope"
ARCHITECTURE = Path(__file__).resolve().parents[1] / "ARCHITECTURE.md"

STAGES = ("data", "models", "train", "evaluate", "analysis")

# The layer of each package; a module's layer is its package's (test_layers_are_packages checks that
# every module is in one).
LAYER_OF = {
    "tunescope": "shared",
    "tunescope.analysis": "analysis",
    "tunescope.cli": "cli",
    "tunescope.config": "shared",
    "tunescope.core": "shared",
    "tunescope.data": "data",
    "tunescope.evaluate": "evaluate",
    "tunescope.grid": "grid",
    "tunescope.models": "models",
    "tunescope.recipes": "pipeline",
    "tunescope.report": "report",
    "tunescope.serve": "serve",
    "tunescope.store": "shared",
    "tunescope.train": "train",
}

# What each layer may import (besides itself).
ALLOWED = {
    "cli": {"serve", "grid", "pipeline", "report", "shared"},
    "serve": {"pipeline", "report", "shared"},
    "grid": {"pipeline", *STAGES, "report", "shared"},
    "pipeline": {*STAGES, "report", "shared"},
    **{stage: {"report", "shared"} for stage in STAGES},
    "report": {"shared"},
    "shared": set(),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def layer(module: str) -> str | None:
    """The layer of `module`: its own entry, else its nearest enclosing package's."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        found = LAYER_OF.get(".".join(parts[:end]))
        if found:
            return found
    return None


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every tunescope module `path` imports, at any depth (function-level too)."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "tunescope"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "tunescope":
                continue
            # `from tunescope.recipes import run` imports the module tunescope.recipes.run.
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                is_module = (SRC / Path(*sub.split("."))).with_suffix(".py").is_file() or (
                    SRC / Path(*sub.split("."))).is_dir()
                found.append((node.lineno, sub if is_module else target))
    return found


def test_every_module_has_a_layer():
    unmapped = [module_name(f) for f in module_files() if layer(module_name(f)) is None]
    assert not unmapped, f"modules with no layer in test_layering.LAYER_OF: {unmapped}"


def test_imports_follow_the_layers():
    offending = []
    for path in module_files():
        source = module_name(path)
        own = layer(source)
        for line, target in imported_modules(path):
            theirs = layer(target)
            if theirs is None:
                offending.append(f"{path.relative_to(SRC)}:{line}: imports {target}, which has no layer")
            elif theirs != own and theirs not in ALLOWED[own]:
                offending.append(f"{path.relative_to(SRC)}:{line}: {source} ({own}) imports {target} "
                                 f"({theirs}); {own} may import only {sorted(ALLOWED[own] | {own})}")
    assert not offending, "imports against ARCHITECTURE.md's layers:\n" + "\n".join(offending)


def test_no_private_names_across_modules():
    offending = []
    for path in module_files():
        source = module_name(path)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tunescope")
                    and not node.level):
                private = [a.name for a in node.names if a.name.startswith("_")]
                if private:
                    offending.append(f"{path.relative_to(SRC)}:{node.lineno}: {source} imports {private} "
                                     f"from {node.module}")
    assert not offending, "private names used outside their module:\n" + "\n".join(offending)


def documented_modules() -> set[str]:
    """Module files named in ARCHITECTURE.md's module table (`evaluate/a.py`, `b.py`, `c.py` rows share a
    folder)."""
    names: set[str] = set()
    for row in ARCHITECTURE.read_text(encoding="utf-8").splitlines():
        if not row.startswith("| `"):
            continue
        folder = ""
        for cell in re.findall(r"`([\w/]+\.py)`", row.split("|")[1]):
            if "/" in cell:
                folder = cell.rsplit("/", 1)[0] + "/"
                names.add(cell)
            else:
                names.add(folder + cell)
    return names


def test_architecture_lists_every_module():
    files = {str(f.relative_to(PACKAGE)) for f in module_files() if f.name != "__init__.py"}
    documented = documented_modules()
    missing = sorted(files - documented)
    assert not missing, f"ARCHITECTURE.md's module table does not list: {missing}"
    stale = sorted(documented - files)
    assert not stale, f"ARCHITECTURE.md's module table lists modules that do not exist: {stale}"


def test_architecture_states_the_layers_the_test_checks():
    text = ARCHITECTURE.read_text(encoding="utf-8")
    assert "`cli → grid → pipeline → {data, models, train, evaluate, analysis} → report`" in text
    shared = sorted(m.removeprefix("tunescope.") for m, lay in LAYER_OF.items()
                    if lay == "shared" and m != "tunescope")
    for name in shared:
        assert f"`{name}/`" in text, f"ARCHITECTURE.md does not list the shared package {name}/"


def import_circles() -> list[list[str]]:
    """Groups of modules that import each other, directly or through others (function-level imports count)."""
    graph = {module_name(f): {target for _, target in imported_modules(f)} for f in module_files()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(module: str) -> None:  # Tarjan's strongly connected components
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in graph[module]:
            if target not in graph or target == module:
                continue
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            group = []
            while (member := stack.pop()) != module:
                group.append(member)
            if group:
                circles.append(sorted([module, *group]))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return circles


def test_no_import_circle():
    assert not import_circles(), f"modules that import each other: {import_circles()}"


def test_layers_are_packages():
    """A module's layer is its package's: no module lives at the top of the package, and every LAYER_OF
    entry is a package."""
    top_level = sorted(f.name for f in PACKAGE.glob("*.py") if f.name != "__init__.py")
    assert not top_level, f"modules outside a layer package (move them into one): {top_level}"
    not_packages = sorted(m for m in LAYER_OF if not (SRC / Path(*m.split("."))).is_dir())
    assert not not_packages, f"LAYER_OF entries that are not packages: {not_packages}"
