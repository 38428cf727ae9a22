"""One base-model evaluation per grid: the first cell of a model evaluates it, the others copy it.

A cached evaluation is reused only when everything that decides its numbers is the same: the model
(name, revision, GGUF file), the dtype and device type, the evaluation settings (tasks, limit, shots,
sampling, generation length, engine, local data paths), the prompt format (the held-out task asks in
the training template), the items themselves (a hash of every task's documents and spec) and the
versions of the code that computes the scores (torch, transformers, peft, tunescope). So cells whose
held-out problems differ (another data split) evaluate their own base model, and a grid resumed after
an upgrade scores the base model again.

The cache is a folder in the grid folder, which every worker of a Ray cluster shares: `<key>/` holds
the evaluation (results.json and per-item JSONL), `<key>.json` says which run computed it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from importlib import metadata
from pathlib import Path

import tunescope
from tunescope.config.run_config import RunConfig
from tunescope.recipes.run import BaseEvalCache
from tunescope.store.fileio import now_iso, write_json
from tunescope.store.grid_folder import BASE_EVALS_DIR
from tunescope.store.run_folder import RESULTS

# The libraries whose code computes a base model's scores.
SCORING_LIBRARIES = ("torch", "transformers", "peft")


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def scoring_versions() -> dict[str, str | None]:
    """The installed version of each library in SCORING_LIBRARIES (None where absent), and tunescope's."""
    versions: dict[str, str | None] = {}
    for name in SCORING_LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {**versions, "tunescope": tunescope.__version__}


def eval_key(cfg: RunConfig, tasks: list, dtype: str, device: str) -> tuple[str, dict]:
    """(the cache key, what went into it)."""
    e, p = cfg.eval, cfg.prompt
    items = {t.name: _digest({"spec": dataclasses.asdict(t.spec),
                              "docs": t.docs[: e.limit] if e.limit else t.docs,
                              "fewshot": t.fewshot_pool}) for t in tasks}
    parts = {"model": cfg.model.name, "revision": cfg.model.revision, "gguf_file": cfg.model.gguf_file,
             "dtype": dtype, "device": device.split(":")[0],
             "eval": e.model_dump(mode="json", exclude={"heldout_size", "evaluate_base"}),
             "prompt": {"template": p.template, "use_chat_template": p.use_chat_template}, "items": items,
             "versions": scoring_versions()}
    return _digest(parts)[:20], parts


class GridBaseEvalCache(BaseEvalCache):
    def __init__(self, grid_folder: Path):
        self.root = Path(grid_folder) / BASE_EVALS_DIR

    def lookup(self, cfg: RunConfig, tasks: list, dtype: str, device: str) -> tuple[str, Path | None]:
        key, _ = eval_key(cfg, tasks, dtype, device)
        folder = self.root / key
        return key, folder if (folder / RESULTS).is_file() else None

    def store(self, key: str, folder: Path, run_name: str) -> None:
        # Copied under a private name and renamed, so a reader never sees half an evaluation; when two
        # workers race, the first rename wins and the second copy is dropped.
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{key}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(folder, tmp)
        try:
            tmp.rename(self.root / key)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            return
        write_json(self.root / f"{key}.json", {"key": key, "computed_by": run_name, "created": now_iso()})

    def computed_by(self, key: str | None) -> str | None:
        info = self.root / f"{key}.json"
        if key is None or not info.is_file():
            return None
        return json.loads(info.read_text(encoding="utf-8")).get("computed_by")
