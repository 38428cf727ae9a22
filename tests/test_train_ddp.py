"""Scale-out: two CPU processes (gloo) follow the same loss trajectory as one process accumulating twice as
many micro-batches, with the same training code; tasks scored during training are scored by the main
process alone, at the same steps, while the other waits.

The processes are started by torchrun: `accelerate launch --cpu` starts several CPU processes only through
MPI, which this machine lacks. Inside, the loop is the same either way: it sees WORLD_SIZE=2 and starts an
`accelerate.Accelerator`, which picks DDP over gloo.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch

SCRIPT = """
import json, sys
from pathlib import Path
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from tunescope.config.run_config import DEFAULT_TEMPLATE, LoraConfig, TrainingConfig
from tunescope.data.prompting import encode_dataset
from tunescope.data.synthetic import generate_problems
from tunescope.evaluate import task_from_docs
from tunescope.evaluate.during_training import TrainingTimeScorer
from tunescope.core.prompt_format import prompt_prefix
from tunescope.train.adapters import build_trainable
from tunescope.train.distributed import current
from tunescope.train.loop import train

model_dir, out, accumulation = sys.argv[1], sys.argv[2], int(sys.argv[3])
dist = current()
tok = AutoTokenizer.from_pretrained(model_dir)
examples, _ = encode_dataset(generate_problems(48, seed=3), tok, template=DEFAULT_TEMPLATE,
                             use_chat_template=False, train_on_prompt=False, max_length=128,
                             overflow="truncate")
cfg = TrainingConfig(max_steps=4, batch_size=3, gradient_accumulation=accumulation, learning_rate=1e-2,
                     eval_every=2, lora=LoraConfig(dropout=0.1), threads=1, warmup_ratio=0.0,
                     micro_batch_tokens=160)
torch.manual_seed(0)
model = build_trainable(AutoModelForCausalLM.from_pretrained(model_dir), cfg)
records = []
heldout = task_from_docs("heldout", generate_problems(4, seed=9), prompt_prefix(DEFAULT_TEMPLATE))
scorer = TrainingTimeScorer([(heldout, [0, 1, 2, 3])], tok, Path(out + ".steps"), every=2, batch_size=4,
                            max_new_tokens=8)
summary = train(model, examples[:-6], examples[-6:], cfg, seed=5, pad_id=tok.pad_token_id,
                device=torch.device("cpu"), dtype=torch.float32, log=records.append, scorer=scorer)
print(json.dumps({"rank": dist.rank, "task_evals": sum(r["kind"] == "task_eval" for r in records)}),
      flush=True)
if dist.is_main:
    params = {n: p.detach().flatten().tolist() for n, p in model.named_parameters() if p.requires_grad}
    json.dump({"records": records, "params": params, "processes": dist.world_size}, open(out, "w"))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_one_process_with_double_accumulation(tmp_path, tiny_model_dir):
    script = tmp_path / "ddp_train.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
              str(_free_port())]
    two = subprocess.Popen([*launch, str(script), str(tiny_model_dir), str(tmp_path / "two.json"), "1"],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    one = subprocess.run([sys.executable, str(script), str(tiny_model_dir), str(tmp_path / "one.json"), "2"],
                         env=env, capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    log, _ = two.communicate(timeout=600)
    assert two.returncode == 0, log[-3000:]

    a = json.loads((tmp_path / "one.json").read_text())
    b = json.loads((tmp_path / "two.json").read_text())
    assert (a["processes"], b["processes"]) == (1, 2)

    def trajectory(run, kind, key):
        return [(r["step"], r[key]) for r in run["records"] if r["kind"] == kind]

    for kind, key in (("train", "loss"), ("train", "grad_norm"), ("val", "val_loss")):
        steps_a, values_a = zip(*trajectory(a, kind, key), strict=True)
        steps_b, values_b = zip(*trajectory(b, kind, key), strict=True)
        assert steps_a == steps_b and len(steps_a) >= 2
        assert values_a == pytest.approx(values_b, rel=1e-4), (kind, key)
    # Tasks during training: the main process scored steps 0, 2 and 4, the other process scored nothing.
    def task_evals(run):
        return [(r["step"], r["metric"], r["n"]) for r in run["records"] if r["kind"] == "task_eval"]

    assert task_evals(a) == task_evals(b) and {s for s, _, _ in task_evals(b)} == {0, 2, 4}
    values_a = [r["value"] for r in a["records"] if r["kind"] == "task_eval"]
    values_b = [r["value"] for r in b["records"] if r["kind"] == "task_eval"]
    # The weights agree to 1e-3, not bit for bit, so a greedy answer at a near tie may differ: at most
    # one item.
    assert all(abs(x - y) <= 1 / 4 + 1e-9 for x, y in zip(values_a, values_b, strict=True))
    assert '"rank": 1, "task_evals": 0' in log
    assert sorted(p.name for p in (tmp_path / "two.json.steps").iterdir()) == ["0", "2", "4"]
    for kind in ("tokens_supervised", "tokens_nonpad", "tokens_total"):
        assert a["records"][-1][kind] == b["records"][-1][kind]
    for name, values in a["params"].items():
        torch.testing.assert_close(torch.tensor(b["params"][name]), torch.tensor(values), rtol=1e-3,
                                   atol=1e-5)
