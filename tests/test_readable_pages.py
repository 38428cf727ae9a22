"""Every page type, rendered from fixture runs, reads as written for people: no Python repr, no stray None,
nan or inf, no unfilled template syntax (the checker is tests/readable.py)."""

from __future__ import annotations

import json

import pytest
from jinja2 import Environment

from grid_fixtures import synthetic_grid
from readable import (
    assert_files_readable,
    assert_no_verdict_stronger_than_its_test,
    assert_run_pages_readable,
    unreadable,
)
from synthetic_run import add_task_curves, build_run
from tunescope.recipes import compare as compare_recipe
from tunescope.recipes import run as pipeline
from tunescope.report.render import template_env

# What report.html showed before dict keys won over dict methods (the key was named "items").
LEAKED = ("Each point scores the same <built-in method items of dict object at 0x7f88f073b100> items of "
          "each task (a fixed seeded subset)")
CURVE = {"heldout": {0: 0.0, 10: 0.2, 20: 0.4, 30: 0.6, 40: 0.65}, "hellaswag": {0: 0.6, 10: 0.6, 20: 0.55,
                                                                                  30: 0.5, 40: 0.5}}


@pytest.fixture(autouse=True)
def _private_registry(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNESCOPE_REGISTRY", str(tmp_path / "registry.sqlite"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pages")
    a = add_task_curves(build_run(root, "alpha", n_train=20, n_heldout=30, n_mc=40), CURVE)
    b = add_task_curves(build_run(root, "beta", n_train=20, n_heldout=30, n_mc=40, overfit=True,
                                  heldout_tuned_acc=0.1), CURVE)
    bare = build_run(root, "bare", n_train=20, with_eval=False, with_train_examples=False, steps=8)
    return root, a, b, bare


def test_the_checker_finds_the_old_repr_leak_and_each_kind_of_slip():
    assert unreadable(LEAKED) and unreadable(f"<p>{LEAKED.replace('<', '&lt;')}</p>", html=True)
    for slip in ("max_steps=None", "slope nan per step", "p = inf", "<function f at 0x1>", "{{ tc.items }}",
                 "score: None", "object at 0x7f00"):
        assert unreadable(slip), slip
    for clean in ("None of the 4 comparisons is significant.", "none flagged", "information", "infant",
                  "nano", "Each point scores the same 32 items of each task"):
        assert not unreadable(clean), clean


def test_the_report_environment_reads_data_keys_where_plain_jinja_leaks_a_method():
    source = "Each point scores the same {{ tc.items }} items; first {{ s.values[0] }}"
    data = {"tc": {"items": 32}, "s": {"values": [0.25, 0.5]}}
    leaked = Environment().from_string(source).render(**data)
    assert "<built-in method items" in leaked and unreadable(leaked)
    fixed = template_env(False).from_string(source).render(**data)
    assert fixed == "Each point scores the same 32 items; first 0.25" and not unreadable(fixed)


def test_the_report_environment_fails_on_undefined_names_and_printed_methods():
    from jinja2 import UndefinedError

    env = template_env(True)
    with pytest.raises(UndefinedError):
        env.from_string("{{ d.no_such_field }}").render(d={})
    with pytest.raises(UndefinedError):
        env.from_string("{% if d.no_such_field %}x{% endif %}").render(d={})
    with pytest.raises(TypeError, match="callable"):
        env.from_string("{{ d.keys }}").render(d={"a": 1})


def test_run_reports_html_and_markdown(runs):
    _, a, b, bare = runs
    for run in (a, b, bare):
        paths = pipeline.write_report(run, register=False)
        assert_files_readable(paths["html"], paths["md"])
    md = (a / "report.md").read_text()
    assert "Each point scores the same 40 items of each task" in md
    assert "max_steps = not set" in md or "max_steps = " in md


def test_cli_summary_table_and_verdicts(runs):
    for run in runs[1:]:
        pipeline.write_report(run, register=False)
        assert_run_pages_readable(run)
        assert_no_verdict_stronger_than_its_test(json.loads((run / "report.json").read_text()))


def test_comparison_pages(runs):
    root, a, b, bare = runs
    paths = compare_recipe.compare([a, b], output=root / "cmp", overrides=["report.bootstrap_resamples=200"])
    assert_files_readable(paths["html"], paths["md"])
    md = paths["md"].read_text()
    # The task-curve table shows each run's first and last point (it showed "— → —" while it read a dict
    # method).
    assert "| 0.0% → 65.0% | 65.0% (step 40) |" in md


def test_grid_pages(runs, tmp_path):
    from tunescope.grid.aggregate import analyse_grid
    from tunescope.report.grid import render_grid

    folder = synthetic_grid(tmp_path / "grid")
    paths = render_grid(analyse_grid(folder), folder)
    assert_files_readable(paths["html"], paths["md"])
