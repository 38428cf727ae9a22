"""Recipes: what one command does from start to end (run, evaluate, compare, export, the contamination
check, a run's held-out problems), on top of the stages."""
