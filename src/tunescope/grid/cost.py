"""What a grid will cost before it runs (`tunescope grid --dry-run`), and how that was estimated.

Per run: training time = planned optimizer steps × examples per step × tokens per example ÷ training
throughput (non-padding tokens/s); validation loss = its passes × validation tokens ÷ (3 × throughput),
a forward pass being about a third of a training step's work; evaluation time = items ÷ evaluation
speed (items/s), for the tuned evaluation of every run, one base evaluation per model, and the items
scored during training (`eval.during_training`: its points × items per point). Cost = time × price
per device-hour.

- Steps: `training.max_steps`, else epochs × steps per epoch over the training split (the loop's own
  formula); early stopping can only make a run shorter, so this is an upper bound.
- Tokens per example: the run's own examples, encoded as training will encode them, when the data is
  local and the model's tokenizer loads here (seconds); else measured by an earlier run of the same
  model (non-padding tokens per example trained); else the data's characters (template + question +
  answer) ÷ 4, a typical rate of English text in BPE tokenizers (digits split one per token make it
  low for arithmetic); else, for hub datasets not read here, half of `prompt.max_length`.
- Throughput and evaluation speed: the grid file's `estimate:` figures if given, else the median of
  finished runs of the same model (this grid's, then the registry's), else unknown.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

from tunescope.grid.spec import Grid, Run

CHARS_PER_TOKEN = 4.0
KNOWN_SPLIT_ROWS = {"gsm8k": 7473}  # openai/gsm8k train, for hub data not read by the estimate


@dataclass
class Rates:
    train_tokens_per_s: float | None = None
    eval_items_per_s: float | None = None
    tokens_per_example: float | None = None
    source: list[str] = field(default_factory=list)


def _local_data(cfg) -> bool:
    """Whether the training rows are cheap to read here: built in, or a local file."""
    return cfg.data.source == "synthetic-math" or Path(cfg.data.source).expanduser().exists()


def _data_rows(cfg) -> tuple[list[dict] | None, int | None]:
    """(rows when cheap to read, their number)."""
    from tunescope.data.sources import load_rows

    d = cfg.data
    if _local_data(cfg):
        rows = load_rows(d.source, split=d.split, question_field=d.question_field,
                         answer_field=d.answer_field, limit=d.limit, synthetic_size=d.synthetic_size,
                         seed=cfg.data_seed, synthetic_families=d.synthetic_families)
        return rows, len(rows)
    known = KNOWN_SPLIT_ROWS.get(d.source)
    n = min(d.limit, known) if d.limit and known else (d.limit or known)
    return None, n


def _eval_items(cfg) -> int | None:
    e = cfg.eval
    total = 0
    for task in e.tasks:
        n = min(e.heldout_size, e.limit or e.heldout_size) if task == "heldout" else e.limit
        if n is None:
            return None
        total += n
    return total


def measured_rates(model: str, folders: list[Path]) -> Rates:
    """Medians over finished runs of `model` in `folders` and in the registry."""
    from tunescope.store import registry as run_registry
    from tunescope.store.run_folder import MANIFEST, open_run

    paths = [p for f in folders if f.is_dir() for p in sorted(f.iterdir()) if (p / MANIFEST).is_file()]
    try:
        paths += [Path(r["path"])
                  for r in run_registry.list_runs() if r.get("model") == model and r["exists"]]
    except Exception:  # an unreadable registry only means fewer measurements
        pass
    tps, ips, tpe, names = [], [], [], []
    for path in dict.fromkeys(paths):
        try:
            rec = open_run(path)
        except Exception:
            continue
        if rec.model != model or rec.summary is None:
            continue
        s = rec.summary
        if s.throughput_nonpad_tps:
            tps.append(s.throughput_nonpad_tps)
        if s.tokens_nonpad and s.steps:
            tc = rec.config.training
            tpe.append(s.tokens_nonpad / (s.steps * tc.batch_size * tc.gradient_accumulation))
        tuned = rec.evaluations.get("tuned")
        seconds = rec.manifest.timings.get("eval_tuned_s")
        if tuned is not None and seconds:
            items = sum(len(v) for v in tuned.samples.values())
            ips.append(items / seconds)
        names.append(path.name)
    rates = Rates(statistics.median(tps) if tps else None, statistics.median(ips) if ips else None,
                  statistics.median(tpe) if tpe else None)
    if names:
        rates.source.append(f"measured on {len(names)} finished run(s) of {model}: {', '.join(names[:4])}"
                            + (" …" if len(names) > 4 else ""))
    return rates


def encoded_lengths(cfg, tokenizers: dict) -> tuple[list[int], list[int]] | None:
    """Token counts of the run's training and validation examples, encoded exactly as training will encode
    them; None when the data is not local or the tokenizer cannot be loaded here (offline hub id, say)."""
    from tunescope.core.errors import UserError
    from tunescope.models.loading import prepare_tokenizer
    from tunescope.recipes.inputs import encode_data, prepare_data

    m = cfg.model
    if not _local_data(cfg):
        return None
    key = (m.name, m.revision, m.trust_remote_code)
    try:
        if key not in tokenizers:
            tokenizers[key] = prepare_tokenizer(m.name, revision=m.revision,
                                                trust_remote_code=m.trust_remote_code, cache_dir=m.cache_dir)
        enc = encode_data(cfg, tokenizers[key], prepare_data(cfg))
    except (UserError, OSError, ValueError):
        return None
    return [len(e.input_ids) for e in enc.train_set], [len(e.input_ids) for e in enc.val_set]


def scored_steps(total_steps: int, every: int, first: int | None) -> int:
    """How many steps are scored: every `every` steps and the last one, plus `first` (step 0) if given."""
    return len({*range(every, total_steps + 1, every), total_steps}
               | ({first} if first is not None else set()))


def _during_training_items(cfg, steps: int | None) -> int:
    dt = cfg.eval.during_training
    if not dt.enabled or not steps:
        return 0
    return scored_steps(steps, dt.every or cfg.training.eval_every, first=0) * dt.limit * len(dt.tasks)


def _tokens_per_example(run: Run, rows: list[dict] | None, measured: float | None,
                        encoded: tuple[list[int], list[int]] | None) -> tuple[float, str]:
    cfg = run.config
    if encoded and encoded[0]:
        return statistics.fmean(encoded[0]), "tokenized"
    if measured:
        return measured, "measured"
    if rows:
        template = len(cfg.prompt.template.replace("{question}", "").replace("{answer}", ""))
        chars = statistics.fmean(len(str(r["question"])) + len(str(r["answer"])) for r in rows) + template
        return min(chars / CHARS_PER_TOKEN, cfg.prompt.max_length), "characters ÷ 4"
    return cfg.prompt.max_length / 2, "assumed: half of prompt.max_length"


def estimate(grid: Grid) -> dict:
    """Per-run and total estimates for `--dry-run` (times in seconds, cost in USD)."""
    from tunescope.train.loop import total_steps_for
    from tunescope.train.throughput import PRICE_PER_HOUR

    est = grid.file.estimate
    by_model: dict[str, Rates] = {}
    rows_out, base_done, tokenizers = [], set(), {}
    for run in grid.runs:
        cfg = run.config
        model = cfg.model.name
        if model not in by_model:
            by_model[model] = measured_rates(model, [grid.folder])
        rates = by_model[model]
        train_tps = est.train_tokens_per_s or rates.train_tokens_per_s
        items_ps = est.eval_items_per_s or rates.eval_items_per_s
        encoded = encoded_lengths(cfg, tokenizers)
        # Encoded examples give the counts exactly; reading the rows again is only for the fallbacks.
        rows, n_rows = (None, None) if encoded else _data_rows(cfg)
        n_train = (len(encoded[0]) if encoded
                   else round(n_rows * (1 - cfg.data.val_fraction)) if n_rows else None)
        steps = total_steps_for(n_train, cfg.training)[0] if n_train else cfg.training.max_steps
        tpe, tpe_how = _tokens_per_example(run, rows, rates.tokens_per_example, encoded)
        per_step = cfg.training.batch_size * cfg.training.gradient_accumulation
        tokens = steps * min(per_step, n_train or per_step) * tpe if steps else None
        val_tokens = sum(encoded[1]) if encoded else 0
        val_passes = scored_steps(steps, cfg.training.eval_every, first=None) if steps and val_tokens else 0
        items = _eval_items(cfg) if cfg.eval.tasks else 0
        base_items = items if (model not in base_done and cfg.eval.evaluate_base) else 0
        base_done.add(model)
        during_items = _during_training_items(cfg, steps)
        train_s = (tokens + val_passes * val_tokens / 3) / train_tps if tokens and train_tps else None
        eval_s = ((items + (base_items or 0) + during_items) / items_ps if items is not None and items_ps
                  else None)
        total_s = train_s + eval_s if train_s is not None and eval_s is not None else None
        price = est.price_per_hour if est.price_per_hour is not None else (
            cfg.training.price_per_hour if cfg.training.price_per_hour is not None
            else PRICE_PER_HOUR["A100" if cfg.device == "cuda" else "cpu"])
        rows_out.append({"run": run.name, "cell": run.cell, "seed": run.seed, "steps": steps,
                         "train_tokens": tokens, "tokens_per_example": tpe,
                         "tokens_per_example_from": tpe_how, "eval_items": items,
                         "base_eval_items": base_items, "during_training_items": during_items,
                         "val_passes": val_passes, "val_tokens": val_tokens, "train_s": train_s,
                         "eval_s": eval_s, "total_s": total_s,
                         "cost_usd": total_s / 3600 * price if total_s is not None else None,
                         "price_per_hour": price})
    known = [r["total_s"] for r in rows_out]
    how = ["training throughput: "
           f"{'grid file estimate.train_tokens_per_s' if est.train_tokens_per_s else 'measured (see below)'}",
           "evaluation speed: "
           f"{'grid file estimate.eval_items_per_s' if est.eval_items_per_s else 'measured (see below)'}"]
    for rates in by_model.values():
        how += rates.source
    return {"runs": rows_out, "how": how,
            "total_s": sum(known) if known and all(k is not None for k in known) else None,
            "total_cost_usd": sum(r["cost_usd"] for r in rows_out) if all(r["cost_usd"] is not None
                                                                          for r in rows_out) else None}
