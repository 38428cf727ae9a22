"""The contamination check: n-gram overlap, its spans and neighbours, duplicates (MinHash LSH)."""

from __future__ import annotations

import json
import random

from tunescope.analysis.contamination import (
    NgramIndex,
    OverlapSettings,
    check,
    item_parts,
    normalise,
    normalise_docs,
)

WORDS = [f"w{i}" for i in range(5000)]


def random_text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def test_normalise_lowercases_drops_punctuation_and_folds_spaces():
    assert normalise("  Janet's ducks lay 16 eggs,\n per day!  ") == [
        "janets", "ducks", "lay", "16", "eggs", "per", "day"]
    assert normalise("48/2 = 24 under_score") == ["482", "24", "underscore"]


def test_item_parts_are_what_the_model_sees():
    assert item_parts({"question": "Q?", "answer": "A"}) == ["Q?"]
    assert item_parts({"query": "ctx", "choices": ["a", "b"], "gold": 0}) == ["ctx", "a", "b"]
    assert item_parts({"question": "Q", "choices": ["1", "2", "3", "4"], "answer": 2}) == [
        "Q", "1", "2", "3", "4"]


def test_overlap_names_the_neighbour_and_the_longest_span():
    rng = random.Random(0)
    train = [[random_text(rng, 40), random_text(rng, 30)] for _ in range(50)]
    shared = train[17][0].split()[5:25]  # 20 words of training example 17's question
    items = [[random_text(rng, 10) + " " + " ".join(shared).upper() + ", " + random_text(rng, 10)],
             [random_text(rng, 40)]]
    found = NgramIndex(normalise_docs(train), n=13).overlaps(normalise_docs(items))
    assert [f["index"] for f in found] == [0]
    f = found[0]
    assert f["train_index"] == 17 and f["span_words"] == 20 and f["shared_ngrams"] == 20 - 13 + 1
    assert f["item"]["span"] == " ".join(shared) == f["train"]["span"]


def test_span_shorter_than_n_is_not_flagged_and_n_is_configurable():
    rng = random.Random(1)
    train = [[random_text(rng, 40)] for _ in range(20)]
    item = [[" ".join(train[3][0].split()[:12])]]
    assert NgramIndex(normalise_docs(train), n=13).overlaps(normalise_docs(item)) == []
    assert [f["train_index"]
            for f in NgramIndex(normalise_docs(train), n=8).overlaps(normalise_docs(item))] == [3]


def test_ngrams_do_not_run_across_parts():
    # The question's last 7 words and the answer's first 7: 14 words in a row only if the parts were joined.
    rng = random.Random(2)
    q, a = random_text(rng, 20), random_text(rng, 20)
    train = [[q, a]]
    item = [[" ".join(q.split()[-7:] + a.split()[:7])]]
    assert NgramIndex(normalise_docs(train), n=13).overlaps(normalise_docs(item)) == []
    assert len(NgramIndex(normalise_docs([[q + " " + a]]), n=13).overlaps(normalise_docs(item))) == 1


def test_check_finds_planted_items_exact_and_near_duplicates():
    rng = random.Random(3)
    test = [[random_text(rng, 45)] for _ in range(60)]
    planted = [5, 11, 42]
    train = [[random_text(rng, 45), random_text(rng, 20)] for _ in range(100)]
    train += [[test[i][0], "the answer is 4"] for i in planted]
    near_copy = train[0][0].split()
    near_copy[-1] = "changed"
    train.append([" ".join(near_copy), train[0][1]])  # a near copy of training example 0
    train.append(list(train[1]))  # an exact repeat of training example 1
    val = [[train[2][0] + " " + train[2][1], "x"]] + [[random_text(rng, 45), "y"] for _ in range(5)]
    result = check(train, {"task": test, "validation": val}, OverlapSettings(),
                   doc_ids={"task": range(100, 160)})
    task = result["sets"]["task"]
    assert task["flagged_doc_ids"] == [100 + i for i in planted]
    assert [f["train_index"] for f in task["flagged"]] == [100, 101, 102]
    assert task["n"] == 60 and task["n_flagged"] == 3 and abs(task["share"] - 3 / 60) < 1e-12
    assert task["flagged"][0]["span_words"] == 45
    # Duplicates compare questions: the planted items are asked again in training.
    assert task["duplicates"]["exact"] == 3 and task["duplicates"]["near"] == 0
    assert task["duplicates"]["doc_ids"] == [100 + i for i in planted]
    within = result["within_train"]
    assert within["exact"] == 1 and within["examples"][0]["train_index"] == 1
    assert within["near"] == 1 and within["examples"][1]["train_index"] == 0
    assert result["sets"]["validation"]["flagged_doc_ids"] == [0]
    assert result["sets"]["validation"]["duplicates"]["near"] == 0  # question + answer is not the question
    json.dumps(result)  # plain data for report.json


def test_exact_duplicate_across_splits():
    rng = random.Random(4)
    train = [[random_text(rng, 30)] for _ in range(30)]
    other = [[train[7][0].upper() + "!"], [random_text(rng, 30)]]
    d = check(train, {"validation": other})["sets"]["validation"]["duplicates"]
    assert d["exact"] == 1 and d["near"] == 0 and d["doc_ids"] == [0] and d["examples"][0]["train_index"] == 7


def test_gsm8k_overlap_agrees_with_a_plain_set_of_ngrams(shared_dir):
    folder = shared_dir / "data" / "gsm8k"
    rows = [json.loads(line) for line in (folder / "train.jsonl").read_text().splitlines()]
    test = [json.loads(line) for line in (folder / "test.jsonl").read_text().splitlines()][:400]
    n = 10  # a shorter n finds more overlaps to compare
    grams = {}
    for i, r in enumerate(rows):
        for part in (r["question"], r["answer"]):
            w = normalise(part)
            for j in range(len(w) - n + 1):
                grams.setdefault(tuple(w[j:j + n]), i)
    expected = []
    for k, t in enumerate(test):
        w = normalise(t["question"])
        if any(tuple(w[j:j + n]) in grams for j in range(len(w) - n + 1)):
            expected.append(k)
    result = check([[r["question"], r["answer"]] for r in rows], {"gsm8k": [[t["question"]] for t in test]},
                   OverlapSettings(ngram=n))
    assert expected and result["sets"]["gsm8k"]["flagged_doc_ids"] == expected
