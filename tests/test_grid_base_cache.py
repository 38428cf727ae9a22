"""The grid's base-evaluation cache key changes with anything that changes the scores, library
versions included, so a grid resumed after an upgrade does not reuse scores of the older code."""

from __future__ import annotations

from importlib import metadata

import torch
import transformers

import tunescope
from tunescope.config.run_config import RunConfig
from tunescope.data.synthetic import generate_problems
from tunescope.evaluate import task_from_docs
from tunescope.grid import base_cache


def key(cfg=None) -> tuple[str, dict]:
    task = task_from_docs("heldout", generate_problems(3, seed=2), "Question: {question}\nAnswer:")
    return base_cache.eval_key(cfg or RunConfig(), [task], "float32", "cpu")


def test_the_key_records_the_installed_library_versions():
    _, parts = key()
    assert parts["versions"] == {"torch": torch.__version__, "transformers": transformers.__version__,
                                 "peft": metadata.version("peft"), "tunescope": tunescope.__version__}


def test_an_upgrade_of_any_scoring_library_or_of_tunescope_changes_the_key(monkeypatch):
    before, _ = key()
    assert key()[0] == before  # the key is a function of its inputs
    installed = metadata.version
    for name in base_cache.SCORING_LIBRARIES:
        with monkeypatch.context() as m:
            m.setattr(base_cache.metadata, "version",
                      lambda n, name=name: "99.0" if n == name else installed(n))
            assert key()[0] != before, name
    monkeypatch.setattr(tunescope, "__version__", "99.0")
    assert key()[0] != before


def test_the_key_still_separates_the_models():
    assert key()[0] != key(RunConfig(model={"name": "another-model"}))[0]
