"""Dataset insights of a run: frequent words, problem clusters, outliers, the highest-loss examples.

Questions come from train_examples.jsonl when the run has it, else from the evaluation records of
the GSM8K-style generation tasks; each evaluation question is given its nearest problem cluster so
the error analysis can break accuracy down by cluster.
"""

from __future__ import annotations

import base64
import random
from typing import Any

from tunescope.run_schema import TrainExample

from ._util import unavailable

TOP_WORDS = 20
N_OUTLIERS = 8
N_HIGHEST_LOSS = 8
_EXAMPLE_CHARS = 400
_CLOUD = {"width": 640, "height": 320, "max_words": 150}


def _is_gsm_task(task: str) -> bool:
    return task == "heldout" or task.startswith("gsm8k")


def generation_tasks(run_eval: dict) -> list[str]:
    tasks = set()
    for ev in run_eval.values():
        for task, recs in ev.get("samples", {}).items():
            if _is_gsm_task(task) and recs and "response" in recs[0]:
                tasks.add(task)
    return sorted(tasks)


def _cap(n: int, cap: int, seed: int) -> list[int]:
    """Indices of at most ``cap`` of ``n`` items: all of them, or a seeded random sample in order."""
    if n <= cap:
        return list(range(n))
    return sorted(random.Random(seed).sample(range(n), cap))


def dataset_insights(train_examples: list[TrainExample] | None, run_eval: dict, rs: dict,
                     seed: int) -> tuple[dict, dict[str, bytes], dict]:
    """Word frequencies, clusters, outliers and highest-loss examples; also the cluster of each eval item."""
    from . import text as text_mod

    images: dict[str, bytes] = {}
    gen_tasks = generation_tasks(run_eval)
    # Evaluation questions, one per (task, doc_id): the fallback corpus and what gets a cluster for accuracy.
    eval_items: list[tuple[str, Any, str]] = []
    seen = set()
    for label in ("tuned", "base"):
        for task in gen_tasks:
            for rec in run_eval.get(label, {}).get("samples", {}).get(task, []):
                key = (task, rec.get("doc_id"))
                if key not in seen and rec.get("question"):
                    seen.add(key)
                    eval_items.append((task, rec.get("doc_id"), rec["question"]))

    out: dict[str, Any] = {"available": True}
    if train_examples:
        questions = [str(r.question or "") for r in train_examples]
        q_source = f"training questions (train_examples.jsonl, {len(questions)} examples)"
        out["train_examples"] = {"available": True, "n": len(questions)}
    else:
        questions = [q for _, _, q in eval_items]
        why = ("train_examples.jsonl is not in the run directory (runs made before it was written)"
               if train_examples is None else "train_examples.jsonl is empty")
        out["train_examples"] = unavailable(why)
        q_source = (f"evaluation questions ({', '.join(gen_tasks)}; training questions unavailable: {why})"
                    if questions else None)

    # Frequent words of the questions and of the tuned model's answers.
    if questions:
        tw = text_mod.top_words(questions, k=TOP_WORDS)
        out["question_words"] = {"source": q_source, **tw}
        if tw["available"]:
            images["wordcloud_questions"] = text_mod.wordcloud_png(
                {w["word"]: w["count"] for w in text_mod.top_words(questions, k=150)["top"]}, **_CLOUD, seed=seed)
    else:
        out["question_words"] = unavailable("no training or evaluation questions recorded")
    answers = [rec.get("response") or "" for task in gen_tasks
               for rec in run_eval.get("tuned", {}).get("samples", {}).get(task, [])]
    if answers:
        tw = text_mod.top_words(answers, k=TOP_WORDS)
        out["answer_words"] = {"source": f"tuned model responses ({', '.join(gen_tasks)}; {len(answers)} responses)",
                               **tw}
        if tw["available"]:
            images["wordcloud_answers"] = text_mod.wordcloud_png(
                {w["word"]: w["count"] for w in text_mod.top_words(answers, k=150)["top"]}, **_CLOUD, seed=seed)
    else:
        out["answer_words"] = unavailable("no tuned model responses on a generation task (heldout / gsm8k)")
    out["wordcloud_backend"] = text_mod.wordcloud_backend()

    # Clusters + outliers on embeddings of (a capped sample of) the questions.
    cluster_of_eval: dict = {}
    cap = rs["max_texts"]
    if len(questions) >= 3:
        from . import clusters as clusters_mod
        from . import outliers as outliers_mod
        from .embeddings import Embedding, embed

        idx = _cap(len(questions), cap, seed)
        texts = [questions[i] for i in idx]
        extra: list[tuple[str, Any, str]] = []
        if train_examples:  # evaluation questions are embedded with them and assigned to the nearest cluster
            extra = [eval_items[i] for i in _cap(len(eval_items), cap, seed)]
        emb = embed(texts + [q for _, _, q in extra], backend=rs["embedding_backend"], seed=seed)
        vecs = emb.vectors
        main = Embedding(vecs[: len(texts)], emb.backend)
        cl = clusters_mod.cluster(texts, seed=seed, projection=rs["projection"], embedding=main)
        cap_note = (f"{len(texts)} of {len(questions)} questions embedded (a seeded random sample; "
                    f"report.max_texts={cap})" if len(texts) < len(questions)
                    else f"all {len(texts)} questions embedded (report.max_texts={cap})")
        meta = {"source": q_source, "n_total": len(questions), "n_embedded": len(texts), "cap": cap,
                "sampled": len(texts) < len(questions), "cap_note": cap_note}
        if cl.get("available"):
            png = cl.pop("map_png", None)
            if png:
                images["cluster_map"] = base64.b64decode(png)
            labels = cl["labels"]  # kept in report.json with the 2-D coordinates: the map's numbers
            import numpy as np

            centres = np.stack([vecs[: len(texts)][np.asarray(labels) == c["id"]].mean(axis=0)
                                for c in cl["clusters"]])
            centres = centres / np.maximum(np.linalg.norm(centres, axis=1, keepdims=True), 1e-12)
            if train_examples:
                ev = vecs[len(texts):]
                assigned = np.argmax(ev @ centres.T, axis=1) if len(ev) else []
                for (task, doc, _), c in zip(extra, assigned, strict=True):
                    cluster_of_eval[(task, doc)] = int(c)
                meta["eval_assignment"] = (f"{len(extra)} evaluation questions assigned to the nearest cluster "
                                           "centre (cosine)" if extra else None)
            else:
                pos = {i: n for n, i in enumerate(idx)}
                for i, (task, doc, _) in enumerate(eval_items):
                    if i in pos:
                        cluster_of_eval[(task, doc)] = int(labels[pos[i]])
                meta["eval_assignment"] = "the clustered questions are the evaluation questions"
        out["clusters"] = {**meta, **cl}
        ol = outliers_mod.outliers(texts, k=N_OUTLIERS, seed=seed, embedding=main)
        if ol.get("available"):
            for o in ol["outliers"]:
                o["index"] = (_example_index(train_examples[idx[o["index"]]], idx[o["index"]]) if train_examples
                              else idx[o["index"]])
        out["outliers"] = {**meta, **ol}
    else:
        reason = f"{len(questions)} question(s); need at least 3"
        out["clusters"] = unavailable(reason)
        out["outliers"] = unavailable(reason)

    if train_examples:
        from . import outliers as outliers_mod

        losses = [r.loss for r in train_examples]
        hl = outliers_mod.highest_loss_examples(losses, questions, k=N_HIGHEST_LOSS)
        if hl.get("available"):
            for ex in hl["examples"]:
                rec = train_examples[ex["index"]]
                ex["index"] = _example_index(rec, ex["index"])
                ex["answer"] = str(rec.answer or "")[:_EXAMPLE_CHARS]
            hl["loss_meaning"] = "the tuned model's mean per-token loss on the example's answer tokens"
        out["highest_loss"] = hl
    else:
        out["highest_loss"] = unavailable(out["train_examples"]["reason"])
    return out, images, cluster_of_eval


def _example_index(example: TrainExample, position: int) -> int:
    """The example's index in the training set as recorded, else its position in train_examples.jsonl."""
    return example.index if "index" in example.model_fields_set else position
