"""Writing a run directory: atomic writes, JSONL, versions for the manifest, the `.partial` folder.

A run is written under `<output_dir>/.<name>.partial/` and renamed to `<output_dir>/<name>/` only
when it completes, so a crashed or interrupted run never looks finished. The manifest's `status`
says the same thing from inside the folder. The names of the folder's files are `store.layout`'s.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from tunescope.core.errors import UserError
from tunescope.store.layout import MANIFEST, partial_name

VERSIONED_PACKAGES = ("tunescope", "torch", "transformers", "peft", "accelerate", "datasets", "numpy")


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def append_jsonl(path: Path, record: dict) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")


def write_jsonl(path: Path, records: Iterable[dict]) -> None:
    write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records))


def not_utf8(path: Path) -> UserError:
    """The error for a file that does not decode as UTF-8, naming the line of the first bad byte."""
    try:
        data = Path(path).read_bytes()
        data.decode("utf-8")
        line = None
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
    except OSError:
        line = None
    return UserError("not UTF-8 text (save the file as UTF-8)", where=f"{path}:{line}" if line else str(path))


def iter_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value) for each non-blank line; a bad line is a UserError naming file:line."""
    try:
        with path.open(encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                if lineno == 1:
                    line = line.removeprefix("\ufeff")  # a byte-order mark is not part of the first record
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as e:
                    raise UserError(f"not valid JSON Lines ({e.msg})", where=f"{path}:{lineno}") from None
                yield lineno, value
    except UnicodeDecodeError:
        raise not_utf8(path) from None


def read_jsonl(path: Path) -> list[dict]:
    """Records of a JSON Lines file; a bad line is a UserError naming file:line."""
    records = []
    for lineno, record in iter_jsonl(path):
        if not isinstance(record, dict):
            raise UserError("each line must be a JSON object", where=f"{path}:{lineno}")
        records.append(record)
    return records


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def git_sha() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                              check=True).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class RunDir:
    """A run folder being written. Use `begin()`, write into `.path`, then `finish()`."""

    def __init__(self, output_dir: str | Path, name: str):
        self.root = Path(output_dir)
        self.final = self.root / name
        self.path = self.root / partial_name(name)
        # The name is validated by the config; this is the second line of defence against escaping.
        if self.final.resolve().parent != self.root.resolve():
            raise UserError(f"run name '{name}' would escape the runs folder", where="name")

    def begin(self, overwrite: bool = False) -> RunDir:
        if self.final.exists() and not overwrite:
            raise UserError(f"run '{self.final}' already exists; pick another name (--set name=...) or "
                            f"pass --overwrite",
                            where="name")
        if self.path.exists():
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True)
        return self

    def finish(self) -> Path:
        if self.final.exists():
            shutil.rmtree(self.final)
        self.path.rename(self.final)
        self.path = self.final
        return self.final

    def abandon(self, status: str = "failed") -> None:
        """Leave a failed (or `interrupted`) run's folder for inspection and --resume, marked so, never at
        the final name."""
        manifest = self.path / MANIFEST
        if not manifest.is_file():
            return
        try:
            data = read_json(manifest)
        except ValueError:  # a damaged manifest stays as it is; the run's own error is what matters
            return
        if isinstance(data, dict):
            data["status"] = status
            try:
                write_json(manifest, data)
            except OSError:  # a full disk: the folder is still .partial, so it is never taken as complete
                pass
