"""Dataset insights of a run: frequent words, problem clusters, outliers, the highest-loss examples.

Questions come from train_examples.jsonl when the run has it, else from the evaluation records of
the GSM8K-style generation tasks; each evaluation question is given its nearest problem cluster so
the error analysis can break accuracy down by cluster.
"""

from __future__ import annotations

import base64
import random
from typing import Any

from tunescope.store.schema import TrainExample

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
    images: dict[str, bytes] = {}
    gen_tasks = generation_tasks(run_eval)
    eval_items = _eval_items(run_eval, gen_tasks)
    out: dict[str, Any] = {"available": True}
    questions, q_source = _questions(train_examples, eval_items, gen_tasks, out)
    out.update(_word_sections(questions, q_source, run_eval, gen_tasks, seed, images))
    cluster_of_eval: dict = {}
    if len(questions) >= 3:
        out["clusters"], out["outliers"], cluster_of_eval = _clusters_and_outliers(
            questions, q_source, train_examples, eval_items, rs, seed, images)
    else:
        reason = f"{len(questions)} question(s); need at least 3"
        out["clusters"] = unavailable(reason)
        out["outliers"] = unavailable(reason)
    out["highest_loss"] = (_highest_loss(train_examples, questions) if train_examples
                           else unavailable(out["train_examples"]["reason"]))
    return out, images, cluster_of_eval


def _eval_items(run_eval: dict, gen_tasks: list[str]) -> list[tuple[str, Any, str]]:
    """Evaluation questions, one per (task, doc_id): the fallback corpus and what gets a cluster for
    accuracy."""
    eval_items: list[tuple[str, Any, str]] = []
    seen = set()
    for label in ("tuned", "base"):
        for task in gen_tasks:
            for rec in run_eval.get(label, {}).get("samples", {}).get(task, []):
                key = (task, rec.get("doc_id"))
                if key not in seen and rec.get("question"):
                    seen.add(key)
                    eval_items.append((task, rec.get("doc_id"), rec["question"]))
    return eval_items


def _questions(train_examples: list[TrainExample] | None, eval_items: list[tuple[str, Any, str]],
               gen_tasks: list[str], out: dict) -> tuple[list[str], str | None]:
    """(the questions the section describes, where they come from); sets ``out["train_examples"]``."""
    if train_examples:
        questions = [str(r.question or "") for r in train_examples]
        out["train_examples"] = {"available": True, "n": len(questions)}
        return questions, f"training questions (train_examples.jsonl, {len(questions)} examples)"
    questions = [q for _, _, q in eval_items]
    why = ("train_examples.jsonl is not in the run directory (runs made before it was written)"
           if train_examples is None else "train_examples.jsonl is empty")
    out["train_examples"] = unavailable(why)
    return questions, (f"evaluation questions ({', '.join(gen_tasks)}; training questions unavailable: {why})"
                       if questions else None)


def _word_sections(questions: list[str], q_source: str | None, run_eval: dict, gen_tasks: list[str],
                   seed: int, images: dict[str, bytes]) -> dict[str, Any]:
    """Frequent words of the questions and of the tuned model's answers, with their word clouds."""
    from . import text as text_mod

    out: dict[str, Any] = {}
    if questions:
        out["question_words"] = _words(text_mod, questions, q_source, "wordcloud_questions", seed, images)
    else:
        out["question_words"] = unavailable("no training or evaluation questions recorded")
    answers = [rec.get("response") or "" for task in gen_tasks
               for rec in run_eval.get("tuned", {}).get("samples", {}).get(task, [])]
    if answers:
        source = f"tuned model responses ({', '.join(gen_tasks)}; {len(answers)} responses)"
        out["answer_words"] = _words(text_mod, answers, source, "wordcloud_answers", seed, images)
    else:
        out["answer_words"] = unavailable("no tuned model responses on a generation task (heldout / gsm8k)")
    out["wordcloud_backend"] = text_mod.wordcloud_backend()
    return out


def _words(text_mod, texts: list[str], source: str | None, image: str, seed: int,
           images: dict[str, bytes]) -> dict[str, Any]:
    """The top words of one corpus, counted once: the cloud shows the most frequent words it can hold,
    the table the first ``TOP_WORDS`` of them."""
    counted = text_mod.top_words(texts, k=_CLOUD["max_words"])
    if not counted["available"]:
        return {"source": source, **counted}
    images[image] = text_mod.wordcloud_png({w["word"]: w["count"] for w in counted["top"]}, **_CLOUD,
                                           seed=seed)
    return {"source": source, **counted, "k": TOP_WORDS, "top": counted["top"][:TOP_WORDS]}


def _clusters_and_outliers(questions: list[str], q_source: str | None,
                           train_examples: list[TrainExample] | None, eval_items: list[tuple[str, Any, str]],
                           rs: dict, seed: int, images: dict[str, bytes]) -> tuple[dict, dict, dict]:
    """Clusters and outliers on embeddings of (a capped sample of) the questions; the cluster of each
    evaluation item."""
    from . import clusters as clusters_mod
    from . import outliers as outliers_mod
    from .embeddings import Embedding, embed

    cap = rs["max_texts"]
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
    cluster_of_eval: dict = {}
    if cl.get("available"):
        png = cl.pop("map_png", None)
        if png:
            images["cluster_map"] = base64.b64decode(png)
        cluster_of_eval, meta["eval_assignment"] = _assign_eval_items(
            cl["labels"], vecs, len(texts), idx, extra if train_examples else None, eval_items,
            cl["clusters"])
    ol = outliers_mod.outliers(texts, k=N_OUTLIERS, seed=seed, embedding=main)
    if ol.get("available"):
        for o in ol["outliers"]:
            o["index"] = (_example_index(train_examples[idx[o["index"]]], idx[o["index"]]) if train_examples
                          else idx[o["index"]])
    return {**meta, **cl}, {**meta, **ol}, cluster_of_eval


def _assign_eval_items(labels, vecs, n_texts: int, idx: list[int], extra: list[tuple[str, Any, str]] | None,
                       eval_items: list[tuple[str, Any, str]],
                       clusters: list[dict]) -> tuple[dict, str | None]:
    """The cluster of each evaluation item: the nearest cluster centre (cosine) when the clusters are of
    training questions (`extra`: the embedded evaluation items), else the item's own cluster."""
    import numpy as np

    cluster_of_eval: dict = {}
    if extra is None:
        pos = {i: n for n, i in enumerate(idx)}
        for i, (task, doc, _) in enumerate(eval_items):
            if i in pos:
                cluster_of_eval[(task, doc)] = int(labels[pos[i]])
        return cluster_of_eval, "the clustered questions are the evaluation questions"
    centres = np.stack([vecs[:n_texts][np.asarray(labels) == c["id"]].mean(axis=0) for c in clusters])
    centres = centres / np.maximum(np.linalg.norm(centres, axis=1, keepdims=True), 1e-12)
    ev = vecs[n_texts:]
    assigned = np.argmax(ev @ centres.T, axis=1) if len(ev) else []
    for (task, doc, _), c in zip(extra, assigned, strict=True):
        cluster_of_eval[(task, doc)] = int(c)
    return cluster_of_eval, (f"{len(extra)} evaluation questions assigned to the nearest cluster centre "
                             "(cosine)" if extra else None)


def _highest_loss(train_examples: list[TrainExample], questions: list[str]) -> dict:
    from . import outliers as outliers_mod

    losses = [r.loss for r in train_examples]
    hl = outliers_mod.highest_loss_examples(losses, questions, k=N_HIGHEST_LOSS)
    if hl.get("available"):
        for ex in hl["examples"]:
            rec = train_examples[ex["index"]]
            ex["index"] = _example_index(rec, ex["index"])
            ex["answer"] = str(rec.answer or "")[:_EXAMPLE_CHARS]
        hl["loss_meaning"] = "the tuned model's mean per-token loss on the example's answer tokens"
    return hl


def _example_index(example: TrainExample, position: int) -> int:
    """The example's index in the training set as recorded, else its position in train_examples.jsonl."""
    return example.index if "index" in example.model_fields_set else position
