"""The run folder's layout: the name of every file and folder a run writes in `runs/<name>/`, defined
here once. The writers (pipeline, training, evaluation, report) and the one reader (`store.run_folder`) take
the names from here; `tests/test_run_layout.py` fails on a copy of one anywhere else in `src/`.

The grid folder's own names (grid file, status records, shared base evaluations) are `store.grid_folder`'s.
"""

from __future__ import annotations

CONFIG = "config.yaml"
MANIFEST = "manifest.json"
METRICS = "metrics.jsonl"
EVAL_DIR = "eval"  # eval/<label>/ (base, tuned): results.json and <task>.jsonl
RESULTS = "results.json"
STEPS_DIR = "steps"  # eval/steps/<step>/<task>.jsonl: tasks scored during training
TRAIN_EXAMPLES = "train_examples.jsonl"
REPORT_JSON = "report.json"
CONTAMINATION = "contamination.json"  # training text against the evaluated items (contamination_recipe)
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
REPORT_IMAGES = "report_images"  # report.md's PNGs
ADAPTER = "adapter"
CHECKPOINTS = "checkpoints"  # step-*/ while training, then final.safetensors
CHECKPOINT_PREFIX = "step-"
FINAL_WEIGHTS = "final.safetensors"
EXPORT_DIR = "export"  # `tunescope export`'s default place: export/adapter/ or export/merged/
LABELS = ("base", "tuned")

# Every name above, for the test that no other module spells one out.
FILE_NAMES = (CONFIG, MANIFEST, METRICS, EVAL_DIR, RESULTS, STEPS_DIR, TRAIN_EXAMPLES, REPORT_JSON,
              CONTAMINATION, REPORT_MD, REPORT_HTML, REPORT_IMAGES, ADAPTER, CHECKPOINTS, CHECKPOINT_PREFIX,
              FINAL_WEIGHTS, EXPORT_DIR)


def partial_name(name: str) -> str:
    """The folder a run is written in until it completes (then it is renamed to `name`)."""
    return f".{name}.partial"


def is_partial_name(folder_name: str) -> bool:
    return folder_name.startswith(".") and folder_name.endswith(".partial")
