"""Experiment grids: a base run config crossed with axes over config keys and seeds.

`spec` reads and expands the grid file, `cost` estimates what it will take, `base_cache` shares one
base-model evaluation between the cells of a model, `executors` runs the cells (in this process or as Ray
tasks), `scheduler` ties them together and `aggregate` turns the finished cells into the grid report's data.
"""
