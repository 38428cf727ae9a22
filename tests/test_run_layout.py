"""Every file name of the run folder and the grid folder is defined once: in `store/layout.py` (the run
folder) and `store/grid_folder.py` (the grid folder). Anywhere else in src/ a string literal that spells one
out is a second copy that can drift from the first."""

from __future__ import annotations

import ast
from pathlib import Path

from tunescope.store import grid_folder
from tunescope.store import layout as run_layout

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "tunescope"
OWNERS = {Path(run_layout.__file__).resolve(), Path(grid_folder.__file__).resolve()}
NAMES = set(run_layout.FILE_NAMES) | {grid_folder.GRID_FILE, grid_folder.STATUS_DIR,
                                      grid_folder.BASE_EVALS_DIR}
# Names that are plain words ("adapter", "eval", "steps", "export") are everyday strings too (a message, a
# CLI command, a dict key): they count only where they build a path (`folder / "adapter"`).
WORDS = {name for name in NAMES if name.isalpha()}


def spelled_out(path: Path, label: str) -> list[str]:
    """`label:line: 'text'` for each string literal in `path` that spells out a folder's file name."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    in_path = {id(side) for node in ast.walk(tree) if isinstance(node, ast.BinOp)
               and isinstance(node.op, ast.Div) for side in (node.left, node.right)}
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
            continue
        text = node.value
        last = text.rstrip("/").rsplit("/", 1)[-1]
        name = text if text in NAMES else last if "/" in text and last in NAMES else None
        if name and (name not in WORDS or id(node) in in_path or "/" in text):
            found.append(f"{label}:{node.lineno}: {text!r}")
    return found


def test_file_names_are_defined_once():
    found = [hit for path in sorted(PACKAGE.rglob("*.py")) if path.resolve() not in OWNERS
             for hit in spelled_out(path, str(path.relative_to(PACKAGE)))]
    assert not found, ("run-folder or grid-folder file names spelled out outside store/layout.py / "
                       "store/grid_folder.py " "(import the constant):\n" + "\n".join(found))


def test_the_check_finds_a_copy(tmp_path):
    module = tmp_path / "copy.py"
    module.write_text('from pathlib import Path\n'
                      'a = Path("run") / "adapter"\n'          # a path: found
                      'b = "eval/base/results.json"\n'          # a path: found
                      'c = "manifest.json"\n'                   # a file name: found
                      'd = f"{\'merged\' if a else \'adapter\'}: saved"\n'  # a word in a message: not a path
                      'e = "eval"\n')                           # a word: not a path
    assert sorted(hit.split(": ", 1)[1] for hit in spelled_out(module, "copy.py")) == [
        "'adapter'", "'eval/base/results.json'", "'manifest.json'"]
