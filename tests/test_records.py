"""One reader of local data files for training and evaluation: the records, and where a bad one is."""

import json

import pytest

from tunescope.core.data_files import read_records
from tunescope.core.errors import UserError
from tunescope.data.sources import load_rows
from tunescope.evaluate.data import load_local_split


def test_jsonl_records_and_a_line_that_is_not_an_object(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"question": "q1"}\n\n{"question": "q2"}\n')
    records = read_records(path)
    assert [r.data["question"] for r in records] == ["q1", "q2"]
    assert [r.where for r in records] == [f"{path}:1", f"{path}:3"]
    path.write_text('{"question": "q1"}\n["not", "an", "object"]\n')
    with pytest.raises(UserError, match=r"expected a JSON object, got list") as err:
        read_records(path)
    assert err.value.where == f"{path}:2"


@pytest.mark.parametrize("payload", [[{"a": 1}, {"a": 2}], {"data": [{"a": 1}, {"a": 2}]},
                                     {"rows": [{"a": 1}, {"a": 2}], "n": 2}])
def test_json_list_or_an_object_holding_one_list(tmp_path, payload):
    path = tmp_path / "d.json"
    path.write_text(json.dumps(payload))
    records = read_records(path)
    assert [r.data["a"] for r in records] == [1, 2]
    assert records[1].where == f"{path}: record 2"


@pytest.mark.parametrize("payload, message", [
    ({"a": [1], "b": [2]}, "object holding one list"),
    ({"question": "q"}, "object holding one list"),
    ([{"a": 1}, "text"], "expected a JSON object, got str"),
])
def test_json_shapes_that_are_refused(tmp_path, payload, message):
    path = tmp_path / "d.json"
    path.write_text(json.dumps(payload))
    with pytest.raises(UserError, match=message):
        read_records(path)


def test_json_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('[\n{"a": 1},\n{"a": }\n]')
    with pytest.raises(UserError, match="not valid JSON") as err:
        read_records(path)
    assert err.value.where == f"{path}:3"


def test_csv_with_and_without_header_counts_physical_lines(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('question,answer\n"two\nlines",a1\n\nq3,a3\n')
    with_header = read_records(path, header=True)
    assert [r.data for r in with_header] == [{"question": "two\nlines", "answer": "a1"},
                                             {"question": "q3", "answer": "a3"}]
    assert [r.where for r in with_header] == [f"{path}:2", f"{path}:5"]
    raw = read_records(path, header=False)
    assert [r.data for r in raw][0] == ["question", "answer"]
    assert [r.where for r in raw] == [f"{path}:1", f"{path}:2", f"{path}:5"]


def test_unsupported_suffix(tmp_path):
    path = tmp_path / "d.txt"
    path.write_text("x")
    with pytest.raises(UserError, match=r"unsupported file type '\.txt'"):
        read_records(path)


def test_training_and_evaluation_read_the_same_json_file_alike(tmp_path):
    path = tmp_path / "test.json"
    path.write_text(json.dumps({"rows": [{"question": "q1", "answer": "a1"},
                                         {"question": "q2", "answer": ""}]}))
    with pytest.raises(UserError, match="field 'answer' is empty") as err:
        load_rows(str(path))
    assert err.value.where == f"{path}: record 2"
    rows = load_local_split(path, "test", eval_split="test", dataset_name=None)
    assert [r.data["question"] for r in rows] == ["q1", "q2"]
    assert rows[1].where == f"{path}: record 2"
