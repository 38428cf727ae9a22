"""Optional engines behind `evaluate(..., backend=...)`: lm-eval itself (the reference) and vLLM."""
