"""The command line as a user meets it: exit codes, one-line errors, no tracebacks."""

import json
import os
import re
import subprocess
import sys

import pytest


def tunescope(*args, cwd=None, timeout=300):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "tunescope.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, env=env)


def assert_user_error(proc, *fragments):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    for f in fragments:
        assert f in proc.stderr, proc.stderr


def test_help_lists_commands():
    proc = tunescope("--help")
    assert proc.returncode == 0
    for cmd in ("run", "train", "eval", "report", "demo"):
        assert cmd in proc.stdout


def test_train_help_names_an_accelerate_config_that_exists():
    from pathlib import Path

    proc = tunescope("train", "--help")
    assert proc.returncode == 0
    named = set(re.findall(r"configs/accelerate/[\w.-]+\.yaml", proc.stdout))
    assert named == {"configs/accelerate/ddp_cpu.yaml", "configs/accelerate/ddp_gpu.yaml"}
    root = Path(__file__).resolve().parents[1]
    assert all((root / path).is_file() for path in named)


def test_config_typo(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("trainig:\n  epochs: 1\n")
    assert_user_error(tunescope("run", str(cfg)), "unknown key 'trainig'", "training")


def test_missing_config_file(tmp_path):
    assert_user_error(tunescope("run", str(tmp_path / "nope.yaml")), "config file not found")


def test_bad_dataset_row_names_file_and_line(tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text(json.dumps({"question": "q", "answer": "a"}) + "\n" + json.dumps({"question": "q2"})
                    + "\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"output_dir: {tmp_path / 'runs'}\ndata:\n  source: {data}\n")
    proc = tunescope("run", str(cfg))
    assert_user_error(proc, f"{data}:2", "answer")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_unknown_model_alias(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model:\n  name: no-such-model\n")
    proc = tunescope("run", str(cfg), "--set", f"output_dir={tmp_path}")
    assert_user_error(proc, "unknown model alias 'no-such-model'")


def test_eval_unknown_task():
    assert_user_error(tunescope("eval", "--model", "x/y", "--tasks", "gsm9k"), "unknown task 'gsm9k'",
                      "gsm8k")


def test_eval_sampling_options_are_checked():
    # Checked before any model or data is loaded.
    assert_user_error(tunescope("eval", "-m", "x/y", "-t", "gsm8k", "--samples", "0"), "samples",
                      "at least 1")
    assert_user_error(tunescope("eval", "-m", "x/y", "-t", "gsm8k", "--temperature", "0.5"), "temperature",
                      "samples > 1")


def test_report_on_missing_run(tmp_path):
    assert_user_error(tunescope("report", str(tmp_path / "nothing")), "run directory not found")


@pytest.mark.parametrize("status", ["running", "failed"])
def test_report_on_unfinished_run(tmp_path, status):
    (tmp_path / "config.yaml").write_text("name: x\n")
    (tmp_path / "manifest.json").write_text(json.dumps({"status": status}))
    assert_user_error(tunescope("report", str(tmp_path)), "not finished", status)
