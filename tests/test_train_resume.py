"""A run killed with SIGKILL and resumed ends with the same adapter, bit for bit, as an uninterrupted run.

Both runs go through the real pipeline in subprocesses (the run folder `.<name>.partial/`, the
checkpoints, `--resume`). The killed run is stopped by the test with SIGKILL two optimizer steps after
its step-4 checkpoint, so the resumed run has to discard steps 5-6 and replay them.
"""

from __future__ import annotations

import signal

import torch
from safetensors.torch import load_file

from kill_resume import KillResume
from tunescope.store.fileio import read_jsonl

OVERRIDES = ["data.source=synthetic-math", "data.synthetic_size=60", "eval.tasks=[]", "prompt.max_length=128",
             "training.max_steps=9", "training.batch_size=4", "training.eval_every=3",
             "training.checkpoint_every=2", "training.learning_rate=1e-2", "training.lora.dropout=0.1",
             "training.threads=1",
             "training.warmup_ratio=0.2"]


def test_sigkill_then_resume_gives_the_same_adapter_bit_for_bit(tmp_path, tiny_model_dir):
    runs = KillResume(tmp_path, tiny_model_dir, OVERRIDES)
    out = runs.out
    straight = runs.start("straight", report=False)  # the reference run: trained, no need to render a report
    killed = runs.start("killed", hold_at=6)
    runs.kill_when_held(killed)
    assert killed.returncode == -signal.SIGKILL

    partial = out / ".killed.partial"
    assert not (out / "killed").exists()
    assert ([p.name for p in sorted((partial / "checkpoints").glob("step-*"))]
            == ["step-00000004", "step-00000006"])
    # Make the kill land between checkpoints: drop the step-6 one, so steps 5-6 must be replayed.
    import shutil

    shutil.rmtree(partial / "checkpoints" / "step-00000006")
    before = [r["step"] for r in read_jsonl(partial / "metrics.jsonl") if r["kind"] == "train"]
    assert before == [1, 2, 3, 4, 5, 6]

    runs.finish(runs.start("killed", resume=True))
    runs.finish(straight)

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
