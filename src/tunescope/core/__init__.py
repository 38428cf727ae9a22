"""Shared helpers below every layer: errors, SIGTERM handling, safe arithmetic, malloc settings, model
facts, prompt format, data files."""
