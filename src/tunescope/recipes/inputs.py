"""What a run reads and checks before its model loads: the training rows split into train and
validation, the held-out problems, the tasks to evaluate and to score during training, and the
tokenised examples. Done first so that bad data, tasks or prompt settings are reported before the
model loads and the base evaluation runs."""

from __future__ import annotations

from dataclasses import dataclass, field

from tunescope.config.run_config import RunConfig
from tunescope.core.errors import UserError


@dataclass
class Prepared:
    train_rows: list[dict]
    val_rows: list[dict]
    heldout_rows: list[dict]
    info: dict = field(default_factory=dict)


def prepare_data(cfg: RunConfig) -> Prepared:
    """Load the training source, split it, and pick held-out problems the model never trains on."""
    from tunescope.data.sources import load_rows, rows_hash
    from tunescope.data.split import train_val_split

    d = cfg.data
    seed = cfg.data_seed
    rows = load_rows(d.source, split=d.split, question_field=d.question_field, answer_field=d.answer_field,
                     limit=d.limit, synthetic_size=d.synthetic_size, seed=seed,
                     synthetic_families=d.synthetic_families)
    train_rows, val_rows, val_idx = train_val_split(rows, d.val_fraction, seed)
    if d.source == "synthetic-math":
        from tunescope.data.synthetic import generate_heldout

        # A different seed gives new problems; any question that also appears in training is skipped,
        # and problems are drawn until there are eval.heldout_size of them.
        try:
            heldout = generate_heldout(cfg.eval.heldout_size, seed=seed + 1_000_003,
                                       exclude={r["question"] for r in rows},
                                       families=d.synthetic_families)
        except ValueError as e:
            raise UserError(f"{e}; lower eval.heldout_size", where="eval.heldout_size") from None
        heldout_from = "synthetic-math (fresh problems, disjoint from training)"
    elif d.source == "gsm8k":
        heldout = load_rows("gsm8k", split="test", limit=cfg.eval.heldout_size)
        heldout_from = "gsm8k test split"
    else:
        heldout = val_rows[: cfg.eval.heldout_size]
        heldout_from = "the validation split (not trained on)"
    info = {"source": d.source, "rows": len(rows), "train": len(train_rows), "val": len(val_rows),
            "heldout": len(heldout), "heldout_from": heldout_from, "val_fraction": d.val_fraction,
            "split_seed": seed, "data_hash": rows_hash(rows), "val_indices_head": val_idx[:20]}
    return Prepared(train_rows, val_rows, heldout, info)


def heldout_task(cfg: RunConfig, heldout_rows: list[dict], samples: int = 1,
                 temperature: float | None = None):
    """The held-out problems as a task, asked exactly as training formatted them."""
    from tunescope.core.prompt_format import prompt_prefix
    from tunescope.evaluate import sampling_overrides, task_from_docs

    sampling = sampling_overrides(samples, temperature)
    if cfg.prompt.use_chat_template:
        return task_from_docs("heldout", heldout_rows, "{question}", apply_chat_template=True, **sampling)
    return task_from_docs("heldout", heldout_rows, prompt_prefix(cfg.prompt.template), **sampling)


def build_tasks(cfg: RunConfig, heldout_rows: list[dict]) -> tuple[list, list[str]]:
    """(tasks to run, groups to score): the held-out task first, then the built-in tasks and groups."""
    from tunescope.evaluate import load_tasks

    sampling = {"samples": cfg.eval.samples, "temperature": cfg.eval.temperature}
    tasks = []
    if "heldout" in cfg.eval.tasks:
        tasks.append(heldout_task(cfg, heldout_rows, **sampling))
    builtin, groups = load_tasks([t for t in cfg.eval.tasks if t != "heldout"], data_paths=cfg.eval.data_path,
                                 num_fewshot=cfg.eval.num_fewshot, **sampling)
    return tasks + builtin, groups


def training_tasks(cfg: RunConfig, prep: Prepared) -> list:
    """The tasks scored during training with their fixed item subsets ([] when off); checked before the model
    loads."""
    from tunescope.evaluate.during_training import load_training_tasks

    if not cfg.eval.during_training.enabled:
        return []
    heldout = heldout_task(cfg, prep.heldout_rows) if "heldout" in cfg.eval.during_training.tasks else None
    return load_training_tasks(cfg, heldout)


@dataclass
class EncodedData:
    train_set: list
    train_stats: object
    val_set: list
    val_stats: object


def encode_data(cfg: RunConfig, tokenizer, prep: Prepared) -> EncodedData:
    """Tokenise the splits; run before the model loads, so that a template or length that leaves nothing
    to train on is reported in seconds, not after loading and the base evaluation."""
    from tunescope.data.prompting import encode_dataset

    p = cfg.prompt
    kw = dict(template=p.template, use_chat_template=p.use_chat_template, train_on_prompt=p.train_on_prompt,
              max_length=p.max_length, overflow=p.overflow)
    train_set, train_stats = encode_dataset(prep.train_rows, tokenizer, **kw)
    val_set, val_stats = encode_dataset(prep.val_rows, tokenizer, **kw)
    if not train_set:
        raise UserError(f"no training examples left after encoding ({train_stats.dropped} dropped as longer "
                        f"than prompt.max_length={p.max_length})", where="prompt.max_length")
    return EncodedData(train_set, train_stats, val_set, val_stats)
