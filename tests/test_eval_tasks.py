"""Tasks as data: loading, prompt formats, few-shot sampling, data errors."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tunescope.core.errors import UserError
from tunescope.evaluate import load_task, task_from_docs
from tunescope.evaluate.fewshot import FewshotSampler
from tunescope.evaluate.processors import hellaswag_preprocess
from tunescope.evaluate.prompts import build_context
from tunescope.evaluate.runner import build_instances
from tunescope.evaluate.spec import known_tasks

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="shared/data not present")


def _gsm8k_dir(tmp_path: Path, n_train: int = 12, n_test: int = 4) -> Path:
    d = tmp_path / "gsm8k"
    d.mkdir()
    for split, n in (("train", n_train), ("test", n_test)):
        with open(d / f"{split}.jsonl", "w") as fh:
            for i in range(n):
                fh.write(json.dumps({"question": f"{split} q{i}?", "answer": f"work {i}\n#### {i}"}) + "\n")
    return d


class _NoChatTokenizer:
    chat_template = None


def test_known_tasks_include_every_mmlu_subject():
    known = known_tasks()
    assert {"gsm8k", "gsm8k_cot_zeroshot", "gsm8k_chat", "hellaswag", "heldout"} <= set(known)
    groups = {"mmlu", "mmlu_stem", "mmlu_humanities", "mmlu_social_sciences", "mmlu_other"}
    assert groups <= set(known)
    subjects = [t for t in known if t.startswith("mmlu_") and t not in groups]
    assert len(subjects) == 57
    assert "mmlu_high_school_computer_science" in subjects


def test_unknown_task_lists_known_ones():
    with pytest.raises(UserError) as err:
        load_task("gsm9k")
    assert "unknown task 'gsm9k'" in str(err.value)
    assert "gsm8k" in str(err.value) and "high_school_computer_science" in str(err.value)


def test_gsm8k_prompt_is_lm_eval_format(tmp_path):
    task = load_task("gsm8k", data_path=str(_gsm8k_dir(tmp_path)), num_fewshot=2)
    inst = build_instances(task, task.docs[:1], tokenizer=None)[0]
    shots = FewshotSampler(task.fewshot_pool, seed=1234).sample(2)
    expected = "".join(f"Question: {s['question']}\nAnswer: {s['answer']}\n\n" for s in shots)
    assert inst.prompt == expected + "Question: test q0?\nAnswer:"
    gen = task.spec.generation_kwargs
    assert gen["until"] == ["Question:", "</s>", "<|im_end|>"] and gen["max_gen_toks"] == 256
    assert gen["do_sample"] is False


def test_fewshot_draws_are_sequential_and_seeded():
    pool = [{"question": str(i), "answer": str(i)} for i in range(50)]
    sampler = FewshotSampler(pool, seed=1234)
    rnd = random.Random(1234)
    for _ in range(3):  # one Random shared by all documents, drawn in order
        assert sampler.sample(5) == rnd.sample(pool, 5)


def test_fewshot_excludes_the_evaluated_doc_when_splits_coincide():
    pool = [{"x": i} for i in range(6)]
    sampler = FewshotSampler(pool, seed=1, exclude_eval_doc=True)
    for doc in pool:
        shots = sampler.sample(5, eval_doc=doc)
        assert doc not in shots and len(shots) == 5
    first_n = FewshotSampler(pool, seed=None, kind="first_n")
    assert first_n.sample(3) == pool[:3]


def test_fewshot_matches_lm_eval_sampler():
    samplers = pytest.importorskip("lm_eval.api.samplers")
    pool = [{"question": f"q{i}", "answer": f"a{i}"} for i in range(40)]
    ours, theirs = FewshotSampler(pool, seed=1234), samplers.ContextSampler(list(pool), rnd=1234)
    ours_x, theirs_x = (FewshotSampler(pool, seed=1234, exclude_eval_doc=True),
                        samplers.ContextSampler(list(pool), rnd=1234))
    for i in range(10):
        assert ours.sample(5) == list(theirs.sample(5))
        assert ours_x.sample(5, eval_doc=pool[i]) == list(theirs_x.sample(5, eval_doc=pool[i]))
    ours_f, theirs_f = (FewshotSampler(pool, seed=None, kind="first_n"),
                        samplers.FirstNSampler(list(pool), rnd=1234))
    assert ours_f.sample(5) == list(theirs_f.sample(5))


@needs_shared
def test_gsm8k_fewshot_prompts_match_lm_eval_on_real_data():
    """The 5-shot prompts of the first documents equal the contexts lm-eval builds (seed 1234)."""
    pytest.importorskip("lm_eval")
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.tasks import TaskManager

    yaml = Path(__file__).resolve().parents[1] / "benchmarks" / "tasks" / "gsm8k_local.yaml"
    if not yaml.is_file():
        pytest.skip("benchmark task YAML missing")
    import yaml as pyyaml

    cfg = pyyaml.safe_load(yaml.read_text().replace("${SHARED}", str(SHARED)))
    lm_task = ConfigurableTask(config=cfg)
    lm_task.set_fewshot_seed(1234)
    ours = load_task("gsm8k", data_path=str(SHARED / "gsm8k"))
    mine = build_instances(ours, ours.docs[:3], tokenizer=None)
    for inst, doc in zip(mine, list(lm_task.test_docs())[:3], strict=True):
        assert inst.prompt == lm_task.fewshot_context(doc, num_fewshot=5)
    del TaskManager


def test_hellaswag_both_shapes(tmp_path):
    raw = {"activity_label": "Roof shingle removal", "ctx_a": "A man is sitting on a roof.", "ctx_b": "he",
           "endings": ["is using wrap [title] to wrap.", "starts  pulling up roofing."], "label": "1"}
    clean = {"activity_label": "Roof shingle removal", "ctx": "A man is sitting on a roof. he",
             "endings": ["is using wrap. to wrap.", "starts pulling up roofing."], "label": 1}
    f_raw, f_clean = tmp_path / "raw.jsonl", tmp_path / "clean.jsonl"
    f_raw.write_text(json.dumps(raw) + "\n")
    f_clean.write_text(json.dumps(clean) + "\n")
    d_raw = load_task("hellaswag", data_path=str(f_raw)).docs[0]
    d_clean = load_task("hellaswag", data_path=str(f_clean)).docs[0]
    # Hub shape: ctx_b is capitalized (lm-eval); cleaned shape: ctx is used as it is.
    assert d_raw["query"] == "Roof shingle removal: A man is sitting on a roof. He"
    assert d_clean["query"] == "Roof shingle removal: A man is sitting on a roof. he"
    assert d_raw["choices"] == ["is using wrap. to wrap.", "starts pulling up roofing."]
    assert d_raw["gold"] == 1 and d_clean["gold"] == 1
    assert hellaswag_preprocess(" a [header] b  c [title]d ") == "a b c. d"


def test_hellaswag_preprocess_matches_lm_eval():
    utils = pytest.importorskip("lm_eval.tasks.hellaswag.utils")
    for text in [" How to x [title] Do y. [step] z  w ", "plain", "[a] b [title]c  d"]:
        assert hellaswag_preprocess(text) == utils.preprocess(text)


def test_mmlu_prompt_from_csv_layout(tmp_path):
    csv_file = tmp_path / "high_school_computer_science_test.csv"
    csv_file.write_text('Let x = 1. What is x << 3 in Python 3?,1,3,8,16,C\n'
                        '"Which, with a comma?",a,b,c,d,A\n')
    task = load_task("mmlu_high_school_computer_science", data_path=str(csv_file))
    assert task.docs[0] == {"question": "Let x = 1. What is x << 3 in Python 3?",
                            "choices": ["1", "3", "8", "16"], "answer": 2}
    prompt = build_context(task.spec, task.docs[0], [])
    assert prompt == (
        "The following are multiple choice questions (with answers) about high school computer science.\n\n"
        "Let x = 1. What is x << 3 in Python 3?\nA. 1\nB. 3\nC. 8\nD. 16\nAnswer:"
    )
    assert task.docs[1]["question"] == "Which, with a comma?"
    assert task.spec.doc_to_choice == ["A", "B", "C", "D"] and task.spec.num_fewshot == 0


def test_mmlu_kshot_from_dev_folder(tmp_path):
    for split, n in (("dev", 5), ("test", 2)):
        (tmp_path / f"anatomy_{split}.csv").write_text("".join(f"{split} q{i},w,x,y,z,B\n" for i in range(n)))
    task = load_task("mmlu_anatomy", data_path=str(tmp_path), num_fewshot=2)
    prompt = build_instances(task, task.docs[:1], None)[0].prompt
    assert prompt.startswith(
        "The following are multiple choice questions (with answers) about anatomy.\n\ndev q0\n")
    assert "Answer: B\n\ndev q1\n" in prompt and prompt.endswith("test q0\nA. w\nB. x\nC. y\nD. z\nAnswer:")


def test_samples_make_generation_tasks_self_consistent_and_leave_choice_tasks_alone(tmp_path):
    gsm = load_task("gsm8k", data_path=str(_gsm8k_dir(tmp_path)), samples=4, temperature=0.5)
    assert gsm.spec.samples == 4
    assert (gsm.spec.generation_kwargs["do_sample"] is True
            and gsm.spec.generation_kwargs["temperature"] == 0.5)
    assert [f["name"] for f in gsm.spec.filter_list] == ["strict-match", "flexible-extract", "maj@4"]
    (tmp_path / "anatomy_test.csv").write_text("q0,w,x,y,z,B\n")
    mmlu = load_task("mmlu_anatomy", data_path=str(tmp_path), samples=4, temperature=0.5)
    assert mmlu.spec.samples == 1 and not mmlu.spec.generation_kwargs.get("do_sample")
    greedy = load_task("gsm8k", data_path=str(tmp_path / "gsm8k"))
    assert greedy.spec.samples == 1 and greedy.spec.generation_kwargs["do_sample"] is False


@needs_shared
def test_mmlu_shared_csv():
    task = load_task("mmlu_high_school_computer_science",
                     data_path=str(SHARED / "mmlu" / "high_school_computer_science_test.csv"))
    assert len(task.docs) == 100 and all(len(d["choices"]) == 4 for d in task.docs)


def test_missing_field_names_file_and_line(tmp_path):
    d = _gsm8k_dir(tmp_path)
    with open(d / "test.jsonl", "a") as fh:
        fh.write(json.dumps({"question": "no answer here"}) + "\n")
    with pytest.raises(UserError) as err:
        load_task("gsm8k", data_path=str(d))
    assert f"{d / 'test.jsonl'}:5" in str(err.value) and "'answer'" in str(err.value)


def test_missing_split_names_the_layouts_looked_for(tmp_path):
    with pytest.raises(UserError) as err:
        load_task("mmlu_anatomy", data_path=str(tmp_path))
    assert "no 'test' split found" in str(err.value) and err.value.where == str(tmp_path)
    assert ("anatomy_test.*, test/anatomy_test.*" in str(err.value)
            and "jsonl/json/csv/parquet" in str(err.value))


def test_empty_split_and_missing_fewshot_split(tmp_path):
    d = _gsm8k_dir(tmp_path)
    (d / "test.jsonl").write_text("")
    with pytest.raises(UserError, match="empty"):
        load_task("gsm8k", data_path=str(d))
    single = tmp_path / "only_test.jsonl"
    single.write_text(json.dumps({"question": "q", "answer": "#### 1"}) + "\n")
    with pytest.raises(UserError, match="5-shot"):
        load_task("gsm8k", data_path=str(single))
    assert len(load_task("gsm8k", data_path=str(single), num_fewshot=0).docs) == 1


def test_hub_download_failure_is_a_user_error(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("offline")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(UserError) as err:
        load_task("gsm8k")
    assert "could not download dataset openai/gsm8k" in str(err.value)
    assert "--data-path gsm8k=PATH" in str(err.value)


def test_task_from_docs_heldout():
    docs = [{"question": "What is 2+2?", "answer": "2+2=4\n#### 4"}]
    task = task_from_docs("heldout", docs, "Instruction: {question}\nResponse: {answer}")
    inst = build_instances(task, task.docs, None)[0]
    assert inst.prompt == "Instruction: What is 2+2?\nResponse:"
    assert task.spec.generation_kwargs["until"] == ["Instruction:"]
    assert [f["name"] for f in task.spec.filter_list] == ["strict-match", "flexible-extract"]
    with pytest.raises(UserError):
        task_from_docs("heldout", [{"question": "q"}], "Q: {question}\nA: {answer}")
    with pytest.raises(UserError):
        load_task("heldout")


def test_chat_variant_needs_a_chat_template(tmp_path):
    task = load_task("gsm8k_chat", data_path=str(_gsm8k_dir(tmp_path)))
    assert task.spec.apply_chat_template and task.spec.num_fewshot == 0
    with pytest.raises(UserError, match="chat template"):
        build_instances(task, task.docs[:1], _NoChatTokenizer())


def test_unknown_override_is_rejected(tmp_path):
    with pytest.raises(UserError, match="unknown task override"):
        load_task("gsm8k", data_path=str(_gsm8k_dir(tmp_path)), num_shots=3)


def test_chat_variant_is_one_user_turn(tmp_path):
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel({"<s>": 0, "</s>": 1, "[UNK]": 2}, unk_token="[UNK]")),
        bos_token="<s>", eos_token="</s>")
    tok.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"
                         "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    task = load_task("gsm8k_chat", data_path=str(_gsm8k_dir(tmp_path)))
    prompt = build_instances(task, task.docs[:1], tok)[0].prompt
    # lm-eval's --apply_chat_template for a 0-shot task: the plain prompt as a single user message.
    assert prompt == "<|user|>Question: test q0?\nAnswer:</s><|assistant|>"
