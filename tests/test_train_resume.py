"""A run killed with SIGKILL and resumed ends with the same adapter, bit for bit, as an uninterrupted run.

Both runs go through the real pipeline in subprocesses (the run folder `.<name>.partial/`, the
checkpoints, `--resume`). The killed run is stopped by the test with SIGKILL two optimizer steps after
its step-4 checkpoint, so the resumed run has to discard steps 5-6 and replay them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from tunescope.runio import read_jsonl

SCRIPT = r"""
import os, sys, time
from pathlib import Path
from tunescope import pipeline
from tunescope.config_loading import load_config

out, name, model, resume, hold_at, marker = sys.argv[1:7]

class Hold(pipeline.ProgressSink):
    def advance(self, what, done, total):
        if what == "train" and done == int(hold_at):
            Path(marker).write_text(str(done))
            time.sleep(600)  # the test SIGKILLs us here

    def stage(self, name):
        if name == "report" and hold_at == "-1":  # the reference run: trained, no need to render a report
            os._exit(0)

cfg = load_config(None, [
    f"output_dir={out}", f"name={name}", f"model.name={model}", "data.source=synthetic-math",
    "data.synthetic_size=60", "eval.tasks=[]", "prompt.max_length=128", "training.max_steps=9",
    "training.batch_size=4", "training.eval_every=3", "training.checkpoint_every=2", "training.learning_rate=1e-2",
    "training.lora.dropout=0.1", "training.threads=1", "training.warmup_ratio=0.2"])
pipeline.run(cfg, resume=resume == "1", progress=Hold())
"""


def _start(script: Path, out: Path, name: str, model: Path, *, resume: bool = False, hold_at: int = 0,
           marker: Path | None = None) -> subprocess.Popen:
    env = {**os.environ, "TUNESCOPE_REGISTRY": str(out / "registry.sqlite"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    args = [sys.executable, str(script), str(out), name, str(model), "1" if resume else "0", str(hold_at),
            str(marker or out / "unused")]
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> None:
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]


def test_sigkill_then_resume_gives_the_same_adapter_bit_for_bit(tmp_path, tiny_model_dir):
    script = tmp_path / "run_pipeline.py"
    script.write_text(SCRIPT)
    out = tmp_path / "runs"
    marker = tmp_path / "held"
    straight = _start(script, out, "straight", tiny_model_dir, hold_at=-1)  # stops before its report
    killed = _start(script, out, "killed", tiny_model_dir, hold_at=6, marker=marker)
    deadline = time.monotonic() + 300
    while not marker.exists():
        assert killed.poll() is None, killed.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "the run never reached step 6"
        time.sleep(0.2)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL

    partial = out / ".killed.partial"
    assert not (out / "killed").exists()
    assert [p.name for p in sorted((partial / "checkpoints").glob("step-*"))] == ["step-00000004", "step-00000006"]
    # Make the kill land between checkpoints: drop the step-6 one, so steps 5-6 must be replayed.
    import shutil

    shutil.rmtree(partial / "checkpoints" / "step-00000006")
    before = [r["step"] for r in read_jsonl(partial / "metrics.jsonl") if r["kind"] == "train"]
    assert before == [1, 2, 3, 4, 5, 6]

    _finish(_start(script, out, "killed", tiny_model_dir, resume=True))
    _finish(straight)

    a = load_file(str(out / ".straight.partial" / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(out / "killed" / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and len(a) > 0
    for key in a:
        assert torch.equal(a[key], b[key]), key

    # The resumed run's records continue the killed one's without duplicates, and match the straight run.
    def training_records(run):
        return [(r["kind"], r["step"], r.get("loss", r.get("val_loss")))
                for r in read_jsonl(out / run / "metrics.jsonl") if r["kind"] in ("train", "val")]

    assert training_records("killed") == training_records(".straight.partial")
    summary = [r for r in read_jsonl(out / "killed" / "metrics.jsonl") if r["kind"] == "summary"]
    assert len(summary) == 1 and summary[0]["resumed_from_step"] == 4 and summary[0]["steps"] == 9
    assert not list((out / "killed" / "checkpoints").glob("step-*"))  # only final.safetensors is left
