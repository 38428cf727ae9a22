"""Checkpoints that let a killed run continue to the same result, bit for bit on CPU.

A checkpoint is a folder `checkpoints/step-00000040/` holding everything the rest of the run
depends on:

- `trainable.safetensors`: the parameters being trained (the adapter, or the whole model for full),
- `best.safetensors`: the best-so-far trainable parameters (the run ships the best, not the last),
- `optimizer.pt`, `scheduler.pt`: AdamW moments and step counts, learning-rate schedule position,
- `rng.pt`: python, numpy, torch (and CUDA) random states,
- `state.json`: the `TrainState` (step, position in the epoch's batch order, token counters, best
  validation loss and step, early-stopping counter) and the settings that must match on resume.

It is written into a temporary folder and renamed into place, so a kill during the write leaves
the previous checkpoint as the latest. Only the newest `keep` are kept.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from tunescope.core.errors import UserError
from tunescope.store.layout import CHECKPOINT_PREFIX

log = logging.getLogger(__name__)


def _rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _contiguous_cpu(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}


def damage(path: Path) -> str | None:
    """What is wrong with a checkpoint folder, or None when every file in it reads."""
    from safetensors import safe_open

    try:
        meta = json.loads((path / "state.json").read_text(encoding="utf-8"))
        if not isinstance(meta, dict) or not isinstance(meta.get("state"), dict):
            return "state.json holds no state"
        for name in ("trainable.safetensors", "best.safetensors"):
            if name == "trainable.safetensors" or (path / name).is_file():
                with safe_open(str(path / name), framework="pt") as f:
                    f.keys()
        for name in ("optimizer.pt", "scheduler.pt", "rng.pt"):
            torch.load(path / name, map_location="cpu", weights_only=True)
    except Exception as e:  # json, safetensors and torch each raise their own types for a damaged file
        return f"{type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}"
    return None


class Checkpointer:
    def __init__(self, directory: Path, keep: int = 2, fingerprint: dict | None = None):
        self.directory = Path(directory)
        self.keep = keep
        # Settings that decide the data order and step count; a resume with other values would not
        # continue the same run.
        self.fingerprint = fingerprint or {}
        self.skipped: list[Path] = []  # damaged checkpoints passed over by resume_point()
        self._resume_point: tuple[Path | None] | None = None

    def save(self, state, trainable: dict[str, torch.Tensor], best: dict[str, torch.Tensor] | None,
             optimizer: torch.optim.Optimizer, scheduler) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{CHECKPOINT_PREFIX}{state.step:08d}"
        tmp = self.directory / f".{name}.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        save_file(_contiguous_cpu(trainable), str(tmp / "trainable.safetensors"))
        if best is not None:
            save_file(_contiguous_cpu(best), str(tmp / "best.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        torch.save(_rng_state(), tmp / "rng.pt")
        (tmp / "state.json").write_text(json.dumps({"state": asdict(state), "fingerprint": self.fingerprint},
                                                   indent=1))
        final = self.directory / name
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        for old in self.all()[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def all(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.glob(f"{CHECKPOINT_PREFIX}*") if (p / "state.json").is_file())

    def latest(self) -> Path | None:
        found = self.all()
        return found[-1] if found else None

    def resume_point(self) -> Path | None:
        """The newest checkpoint whose files all read; damaged newer ones (a disk that filled up, a
        copy cut short) are skipped with a warning, so a resume loses only their steps."""
        if self._resume_point is None:
            chosen = None
            for path in reversed(self.all()):
                problem = damage(path)
                if problem is None:
                    chosen = path
                    break
                log.warning("checkpoint %s is damaged (%s); trying the one before it", path, problem)
                self.skipped.append(path)
            if self.skipped:
                log.warning("resuming from %s", chosen if chosen else "the start (no intact checkpoint)")
            self._resume_point = (chosen,)
        return self._resume_point[0]

    @staticmethod
    def load_state(path: Path) -> dict:
        """The saved TrainState fields (step, epoch, ...), without touching the model."""
        return json.loads((path / "state.json").read_text())["state"]

    def load(self, path: Path, optimizer: torch.optim.Optimizer, scheduler,
             params: dict[str, torch.Tensor]) -> dict:
        """Restore parameters, optimizer, scheduler and RNG in place; return the saved state and best."""
        meta = json.loads((path / "state.json").read_text())
        mismatched = {k: (meta["fingerprint"].get(k), v) for k, v in self.fingerprint.items()
                      if meta["fingerprint"].get(k) != v}
        if mismatched:
            detail = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in mismatched.items())
            raise UserError(f"cannot resume: the checkpoint was written with other settings ({detail})",
                            where=str(path))
        saved = load_file(str(path / "trainable.safetensors"))
        missing = set(params) - set(saved)
        if missing:
            raise UserError(f"cannot resume: checkpoint lacks {len(missing)} trained tensors "
                            f"(e.g. {sorted(missing)[0]})", where=str(path))
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(saved[name].to(p.device))
        optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True))
        scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
        _set_rng_state(torch.load(path / "rng.pt", weights_only=True))
        best_file = path / "best.safetensors"
        return {"state": meta["state"], "best": load_file(str(best_file)) if best_file.is_file() else None}
