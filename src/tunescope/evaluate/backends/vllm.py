"""`backend="vllm"`: generation with vLLM on CUDA; log-likelihood tasks stay on the native engine.

vLLM loads weights from disk, so the model is saved to a temporary directory first (a PEFT model is
merged into its base). Prompts are passed as token ids, tokenised by the same `Encoder` as the
native engine, and the stop strings, token limit and post-processing are the same, so answers match
up to the numerical differences of vLLM's kernels. Not exercised by the test suite (no CUDA there).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from tunescope.core.errors import UserError
from tunescope.evaluate.generation import GenRequest, GenResult, postprocess
from tunescope.evaluate.task import Task


def _weights_dir(model, tokenizer, tmp: Path) -> str:
    name = getattr(model.config, "name_or_path", "")
    if Path(name).is_dir() and not hasattr(model, "peft_config"):
        return name
    merged = model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
    merged.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    return str(tmp)


def evaluate_with_vllm(model, tokenizer, tasks: list[Task], *, limit=None, batch_size=16, max_new_tokens=None,
                       out_dir=None, progress=None) -> dict[str, Any]:
    try:
        import torch
        import vllm
    except ImportError:
        raise UserError("backend 'vllm' needs vLLM installed (pip install vllm)", where="backend") from None
    if not torch.cuda.is_available():
        raise UserError("backend 'vllm' needs a CUDA GPU", where="backend")
    from tunescope.evaluate import runner

    with tempfile.TemporaryDirectory() as tmp:
        dtype = str(next(model.parameters()).dtype).replace("torch.", "")
        llm = vllm.LLM(model=_weights_dir(model, tokenizer, Path(tmp)), dtype=dtype, seed=0,
                       max_num_seqs=batch_size if isinstance(batch_size, int) else 256)

        def engine(requests: list[GenRequest], on_done) -> list[GenResult]:
            params = [
                vllm.SamplingParams(
                    temperature=r.temperature if r.do_sample else 0.0, top_p=r.top_p, top_k=r.top_k or -1,
                    max_tokens=r.max_new_tokens, stop=[s for s in r.until if s],
                    seed=r.seed if r.do_sample else None, skip_special_tokens=True,
                )
                for r in requests
            ]
            outs = llm.generate([{"prompt_token_ids": r.prompt_ids} for r in requests], params,
                                use_tqdm=False)
            results = []
            for i, (r, out) in enumerate(zip(requests, outs, strict=True)):
                completion = out.outputs[0]
                res = GenResult(postprocess(completion.text, r.until), list(completion.token_ids),
                                "length" if completion.finish_reason == "length" else "stop")
                results.append(res)
                on_done(i, res)
            return results

        return runner.evaluate_native(model, tokenizer, tasks, limit=limit, batch_size=batch_size,
                                      max_new_tokens=max_new_tokens, out_dir=out_dir, progress=progress,
                                      generate=engine)
