import json

import pytest

from tunescope.config.run_config import DEFAULT_TEMPLATE
from tunescope.core.errors import UserError
from tunescope.core.prompt_format import IGNORE_INDEX, prompt_prefix
from tunescope.data.prompting import encode_dataset, encode_example
from tunescope.data.sources import load_rows
from tunescope.data.split import train_val_split


def test_split_is_deterministic_and_disjoint():
    rows = list(range(100))
    a = train_val_split(rows, 0.1, seed=7)
    b = train_val_split(rows, 0.1, seed=7)
    c = train_val_split(rows, 0.1, seed=8)
    assert a == b and a[2] != c[2]
    train, val, _ = a
    assert (len(val) == 10 and len(train) == 90 and not set(train) & set(val)
            and set(train) | set(val) == set(rows))


def test_split_keeps_one_validation_row_for_tiny_data():
    train, val, _ = train_val_split([1, 2, 3], 0.1, seed=0)
    assert len(val) == 1 and len(train) == 2


def test_prompt_tokens_are_masked_and_eos_supervised(tiny_tokenizer):
    q, a = "Tom has 3 apples and buys 4 more. How many apples does he have?", "3+4 = <<3+4=7>>7\n#### 7"
    ex = encode_example(q, a, tiny_tokenizer, template=DEFAULT_TEMPLATE)
    assert ex.input_ids[-1] == tiny_tokenizer.eos_token_id and ex.labels[-1] == tiny_tokenizer.eos_token_id
    supervised = [t for t, lab in zip(ex.input_ids, ex.labels, strict=True) if lab != IGNORE_INDEX]
    text = tiny_tokenizer.decode(supervised[:-1])
    assert text.strip() == a  # exactly the response is supervised
    n_prompt = len(tiny_tokenizer(prompt_prefix(DEFAULT_TEMPLATE).format(question=q))["input_ids"])
    assert all(lab == IGNORE_INDEX for lab in ex.labels[: n_prompt - 1])
    full = encode_example(q, a, tiny_tokenizer, template=DEFAULT_TEMPLATE, train_on_prompt=True)
    assert full.labels == full.input_ids


def test_overflow_truncate_and_drop_are_counted(tiny_tokenizer):
    rows = [{"question": "short?", "answer": "1"}, {"question": "long " * 80, "answer": "2 " * 80}]
    kw = dict(template=DEFAULT_TEMPLATE, use_chat_template=False, train_on_prompt=False, max_length=40)
    kept, stats = encode_dataset(rows, tiny_tokenizer, overflow="drop", **kw)
    assert len(kept) == 1 and stats.dropped == 1 and stats.dropped_rows == [1]
    kept, stats = encode_dataset(rows, tiny_tokenizer, overflow="truncate", **kw)
    assert stats.truncated == 1 and all(len(e.input_ids) <= 40 for e in kept)


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def test_local_jsonl_with_field_mapping(tmp_path):
    p = _write(tmp_path / "d.jsonl", [json.dumps({"q": "a?", "a": "#### 1", "extra": 5})])
    rows = load_rows(str(p), question_field="q", answer_field="a")
    assert rows == [{"question": "a?", "answer": "#### 1", "extra": 5}]


def test_missing_field_names_file_line_and_field(tmp_path):
    p = _write(tmp_path / "d.jsonl",
               [json.dumps({"question": "a", "answer": "b"}), json.dumps({"question": "c"})])
    with pytest.raises(UserError, match=r"d\.jsonl:2: missing field 'answer'"):
        load_rows(str(p))


def test_invalid_jsonl_names_line(tmp_path):
    p = _write(tmp_path / "d.jsonl", [json.dumps({"question": "a", "answer": "b"}), "{not json"])
    with pytest.raises(UserError, match=r"d\.jsonl:2: not valid JSON Lines"):
        load_rows(str(p))


def test_empty_dataset_is_an_error(tmp_path):
    p = _write(tmp_path / "d.jsonl", [""])
    with pytest.raises(UserError, match="empty"):
        load_rows(str(p))


def test_csv_and_json_sources(tmp_path):
    (tmp_path / "d.csv").write_text("question,answer\nq1,a1\nq2,\n")
    with pytest.raises(UserError, match=r"d\.csv:3: field 'answer'"):
        load_rows(str(tmp_path / "d.csv"))
    (tmp_path / "d.json").write_text(json.dumps([{"question": "q", "answer": "a"}]))
    assert load_rows(str(tmp_path / "d.json"))[0]["question"] == "q"


def test_hub_source_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(UserError, match="could not load dataset 'openai/gsm8k'.*local file"):
        load_rows("gsm8k")


def test_gsm8k_local_file_matches_expected_shape(shared_dir):
    rows = load_rows(str(shared_dir / "data" / "gsm8k" / "test.jsonl"), limit=5)
    assert len(rows) == 5 and all("####" in r["answer"] for r in rows)


def test_synthetic_heldout_has_the_size_asked_for_when_training_covers_the_first_draws(monkeypatch):
    from tunescope.config.loading import load_config
    from tunescope.data import sources
    from tunescope.data.synthetic import generate_problems
    from tunescope.recipes.inputs import prepare_data

    cfg = load_config(None, ["data.synthetic_size=60", "eval.heldout_size=10"])
    heldout_seed = cfg.data_seed + 1_000_003
    # Training data that holds the first 40 problems of the held-out stream (and 20 others).
    taken = generate_problems(40, seed=heldout_seed)
    monkeypatch.setattr(sources, "load_rows",
                        lambda *a, **k: taken + generate_problems(20, seed=cfg.data_seed))
    prep = prepare_data(cfg)
    assert len(prep.heldout_rows) == 10 and prep.info["heldout"] == 10
    assert prep.heldout_rows == generate_problems(50, seed=heldout_seed)[40:]
