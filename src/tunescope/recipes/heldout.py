"""A finished run's held-out task, made again from its folder: `tunescope eval --heldout-from RUN`.

The run's config says how its held-out problems were made (`recipes.inputs.prepare_data`) and how they
were asked (the training prompt format, `recipes.inputs.heldout_task`); its `eval:` settings say how they
were scored (items, generation cap, sampling, engine, batch size); its manifest says in which dtype
the model ran and from which base weights. The problems are made again exactly as the run made them
and checked against what the run recorded — the training data's hash, the number of held-out
problems, and each item of its held-out evaluations — so that scoring the exported adapter in
another process gives the run's own responses item for item, or an error says why it cannot.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunescope.config.run_config import RunConfig
from tunescope.core.errors import UserError
from tunescope.recipes.inputs import heldout_task, prepare_data
from tunescope.store import run_folder as rr
from tunescope.store.schema import TaskEvalRecord

HELDOUT = "heldout"
OPTION = "--heldout-from"
# The `eval.*` settings of the run that decide which items are scored and what is generated; an
# option given on the command line replaces the run's value.
EVAL_SETTINGS = ("limit", "batch_size", "max_new_tokens", "num_fewshot", "samples", "temperature", "engine")


@dataclass
class RunHeldout:
    """The held-out problems of one run, with what is needed to score them as the run did."""

    record: rr.RunRecord
    rows: list[dict]

    @property
    def config(self) -> RunConfig:
        return self.record.config

    @property
    def dtype(self) -> str | None:
        """The dtype the run's model ran in (`auto` resolved), as its manifest records it."""
        return self.record.manifest.dtype

    def eval_settings(self, given: dict[str, Any], *, native: bool = True) -> dict[str, Any]:
        """The run's `eval.*` settings, with the options given on the command line in their place. A
        sample count given without a temperature leaves the run's temperature out (it belongs to the
        run's own sample count); another backend than the native one runs its own engine."""
        settings = {key: getattr(self.config.eval, key) for key in EVAL_SETTINGS}
        if "samples" in given and "temperature" not in given:
            settings["temperature"] = None
        if not native:
            settings["engine"] = "auto"
        return {**settings, **given}

    def base_model(self) -> str:
        """The base weights the run trained on: where it read them, or its configured model."""
        from tunescope.recipes.export import base_source

        return base_source(self.config.model, self.record.manifest.model.source)

    def task(self, samples: int = 1, temperature: float | None = None):
        """The held-out task, asked exactly as training formatted the problems."""
        return heldout_task(self.config, self.rows, samples=samples, temperature=temperature)


def read_run_heldout(run_dir: Path) -> RunHeldout:
    """Read a finished run and make its held-out problems again; a UserError when the folder is no
    finished run, or the problems made now are not the ones the run had."""
    where = f"{OPTION} {run_dir}"
    if run_dir.is_dir() and not (run_dir / rr.MANIFEST).is_file() and (run_dir / rr.RESULTS).is_file():
        raise UserError(f"an evaluation folder, not a run folder (no {rr.MANIFEST}); name the run whose "
                        "held-out problems to score", where=where)
    record = rr.open_run(run_dir)
    if record.manifest.data.get("heldout") == 0:
        raise UserError("the run has no held-out problems (its manifest.json records 0)",
                        where=str(run_dir / rr.MANIFEST))
    try:
        prep = prepare_data(record.config)
    except UserError as e:
        why = str(e).removeprefix(f"{e.where}: ") if e.where else str(e)
        raise UserError(f"cannot make the held-out problems of run {run_dir} again: {why}",
                        where=e.where) from None
    if not prep.heldout_rows:
        raise UserError(f"the run has no held-out problems ({prep.info['heldout_from']} is empty)",
                        where=where)
    made = RunHeldout(record, prep.heldout_rows)
    _check_against_the_run(made, prep.info)
    return made


def _check_against_the_run(made: RunHeldout, info: dict) -> None:
    """The problems made now are the run's: same training data, same number, and each item the run
    scored (held-out evaluations and scoring during training) has the same question and answer."""
    record = made.record
    recorded = record.manifest.data
    manifest = str(record.path / rr.MANIFEST)
    if recorded.get("data_hash") and recorded["data_hash"] != info["data_hash"]:
        raise UserError(f"the training data read now ({info['source']}) is not the data the run trained on "
                        f"(data hash {info['data_hash'][:12]} now, {str(recorded['data_hash'])[:12]} in the "
                        "run), so its held-out problems cannot be made again", where=manifest)
    if recorded.get("heldout") not in (None, len(made.rows)):
        raise UserError(f"{len(made.rows)} held-out problems made now, {recorded['heldout']} in the run",
                        where=manifest)
    task = made.task()
    for path, items in _scored_items(record):
        for line, item in enumerate(items, start=1):
            doc_id = item.get("doc_id")
            if "question" not in item:
                continue
            same = (isinstance(doc_id, int) and 0 <= doc_id < len(task.docs)
                    and task.docs[doc_id]["question"] == item["question"]
                    and _gold(task, doc_id) == item.get("target"))
            if not same:
                raise UserError(f"held-out problem {doc_id} made now differs from the one the run scored "
                                f"(the data source or the problem generator changed since the run)",
                                where=f"{path}:{line}")


def _gold(task, doc_id: int) -> str:
    from tunescope.evaluate.prompts import target_text

    return target_text(task.spec, task.docs[doc_id])


def _scored_items(record: rr.RunRecord) -> list[tuple[Path, list[dict]]]:
    """(file, per-item records) of every held-out scoring the run wrote."""
    found = []
    for evaluation in record.evaluations.values():
        if HELDOUT in evaluation.samples:
            found.append((evaluation.path / f"{HELDOUT}.jsonl", evaluation.samples[HELDOUT]))
    for step in sorted({r.step for r in record.records(TaskEvalRecord) if r.task == HELDOUT}):
        items = record.task_item_records(step, HELDOUT)
        if items is not None:
            found.append((record.path / rr.EVAL_DIR / rr.STEPS_DIR / str(step) / f"{HELDOUT}.jsonl", items))
    return found
