"""Training: adapter builders, batching, metrics and the training loop."""
