"""The run folder and the grid folder: their layout, reading and writing, record types, the one-writer
lock, what --overwrite may replace, and the run registry."""
