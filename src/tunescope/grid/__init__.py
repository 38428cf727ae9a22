"""Experiment grids: a base run config crossed with axes over config keys and seeds.

`spec` reads and expands the grid file, `cost` estimates what it will take, `base_cache` shares one
base-model evaluation between the cells of a model, `engine` runs the cells (in this process or as Ray
tasks), `runner` ties them together and `analysis` turns the finished cells into the grid report's data.
"""
