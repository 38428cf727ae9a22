"""Data: sources, the synthetic generator, prompting and splitting."""
