"""Functions in src/ are at most 80 lines, so each reads as one idea. The training loop is the exception:
it stays one function that reads top to bottom (setup, summary and out-of-memory handling live outside it)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "tunescope"
MAX_LINES = 80
EXCEPTIONS = {"tunescope.train.loop._train"}


def function_lengths() -> dict[str, int]:
    lengths = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
                name = f"{module}.{node.name}"  # dotted, like an import: the module layout's move rewrites it
                lengths[name] = max(lengths.get(name, 0), node.end_lineno - node.lineno + 1)
    return lengths


def test_no_function_is_over_80_lines():
    long = {name: n for name, n in function_lengths().items() if n > MAX_LINES}
    new = sorted(f"{name} ({n} lines)" for name, n in long.items() if name not in EXCEPTIONS)
    assert not new, f"functions over {MAX_LINES} lines (split them along their seams): {new}"
