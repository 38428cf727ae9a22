"""Time the contamination check on GSM8K: its 7,473 training problems (question and answer, as trained)
against its 1,319 test questions, and print the overlap it finds.

    PYTHONPATH=src python benchmarks/contamination_speed.py [--shared ../shared] [--ngram 13] [--repeat 3]
    PYTHONPATH=src python benchmarks/contamination_speed.py --demo

Reads the local copies in shared/data/gsm8k; prints the timing of each repeat and the figures. With
--demo: the check as the demo runs it (configs/demo.yaml: its training examples against its held-out
task, validation split and held-out problems), timed from a fresh process including imports.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from tunescope.analysis.contamination import OverlapSettings, check


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def demo(repeat: int) -> None:
    t0 = time.perf_counter()
    from tunescope.config.loading import load_config
    from tunescope.recipes.contamination import check_run
    from tunescope.recipes.inputs import build_tasks, prepare_data
    from tunescope.recipes.run import DEMO_CONFIG

    cfg = load_config(DEMO_CONFIG, [])
    prep = prepare_data(cfg)
    tasks, _ = build_tasks(cfg, prep.heldout_rows)
    import torch  # noqa: F401  (a run imports it anyway, to train; the check's item selection imports it too)

    t1 = time.perf_counter()
    times = []
    for _ in range(repeat):
        start, cpu = time.perf_counter(), time.process_time()
        result = check_run(cfg, prep, tasks)
        times.append((time.perf_counter() - start, time.process_time() - cpu))
    print(f"demo data: {len(prep.train_rows)} training examples; tasks {list(result['tasks'])}; "
          f"preparing data and tasks, importing torch took {t1 - t0:.2f} s (the run does this anyway)")
    print(f"load average: {os.getloadavg()[0]:.1f}")
    print("seconds per check, wall (CPU); the first includes importing datasketch:",
          ", ".join(f"{w:.3f} ({c:.3f})" for w, c in times))
    for name, s in {**result["tasks"], **result["splits"]}.items():
        print(f"{name}: {s['n_flagged']} of {s['n']} share a {result['ngram']}-gram with training")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--demo", action="store_true")
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared"))
    ap.add_argument("--ngram", type=int, default=13)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if args.demo:
        demo(args.repeat)
        return
    folder = Path(args.shared) / "data" / "gsm8k"
    train = [[r["question"], r["answer"]] for r in read_jsonl(folder / "train.jsonl")]
    test = [[r["question"]] for r in read_jsonl(folder / "test.jsonl")]
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible; "
          f"{len(train)} train vs {len(test)} test, n={args.ngram}")
    times = []
    for _ in range(args.repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        result = check(train, {"gsm8k": test}, OverlapSettings(ngram=args.ngram))
        times.append((time.perf_counter() - t0, time.process_time() - c0))
    s = result["sets"]["gsm8k"]
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    print("seconds per check, wall (CPU):", ", ".join(f"{w:.2f} ({c:.2f})" for w, c in times))
    print(f"test items sharing a {args.ngram}-gram with training: {s['n_flagged']} / {s['n']} "
          f"({100 * s['share']:.2f} %)")
    spans = sorted((f["span_words"] for f in s["flagged"]), reverse=True)
    print("longest spans (words):", spans[:10])
    d = s["duplicates"]
    print(f"test items duplicating a training problem: exact {d['exact']}, near {d['near']}")
    w = result["within_train"]
    print(f"within training: exact repeats {w['exact']}, near copies {w['near']}")
    for x in w["examples"]:
        print(f"  {x['kind']} J={x['similarity']}: train {x['index']} ~ train {x['train_index']}: "
              f"«{x['text'][:100]}…»")
    for f in s["flagged"][:5]:
        print(f"- test {f['doc_id']} ~ train {f['train_index']} ({f['span_words']} words): "
              f"«{f['item']['span']}»")


if __name__ == "__main__":
    main()
