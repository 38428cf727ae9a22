"""The packaged demo configuration keeps the promises its results rest on: enough held-out problems
for a significance test to have power, held-out problems disjoint from training and drawn from the
same family set, and task points that fall on steps the run reaches."""

from __future__ import annotations

from tunescope.config.loading import load_config
from tunescope.recipes.inputs import prepare_data
from tunescope.recipes.run import DEMO_CONFIG


def test_demo_heldout_is_large_disjoint_and_from_the_training_set_of_families():
    cfg = load_config(DEMO_CONFIG)
    assert cfg.data.source == "synthetic-math" and cfg.data.synthetic_families == "two-step"
    assert cfg.eval.heldout_size >= 100 and cfg.eval.limit >= cfg.eval.heldout_size
    prep = prepare_data(cfg)
    trained = {r["question"] for r in prep.train_rows + prep.val_rows}
    heldout = [r["question"] for r in prep.heldout_rows]
    assert len(heldout) == len(set(heldout)) == cfg.eval.heldout_size
    assert not trained & set(heldout)
    assert {r["family"] for r in prep.heldout_rows} == {r["family"] for r in prep.train_rows}
    assert all(r["steps"] == 2 for r in prep.heldout_rows)


def test_demo_task_points_fall_on_reached_steps():
    cfg = load_config(DEMO_CONFIG)
    prep = prepare_data(cfg)
    per_step = cfg.training.batch_size * cfg.training.gradient_accumulation
    steps = cfg.training.epochs * -(-len(prep.train_rows) // per_step)
    every = cfg.eval.during_training.every
    assert cfg.eval.during_training.enabled and steps % every == 0 and steps // every >= 3
