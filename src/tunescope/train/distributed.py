"""One process or many: the few collective operations the training loop needs.

Under `accelerate launch` (or torchrun) the environment carries WORLD_SIZE > 1; we then start an
`accelerate.Accelerator`, which reads the launch configuration (DDP, FSDP or DeepSpeed, see
configs/accelerate/) and wraps the model accordingly. A plain `python`/`tunescope` process never
imports accelerate and runs with the same code paths, with every collective a no-op.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from functools import lru_cache

import torch

from tunescope.core.errors import UserError


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1
    accelerator: object | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def device(self) -> torch.device | None:
        return self.accelerator.device if self.accelerator is not None else None

    def prepare_model(self, module: torch.nn.Module) -> torch.nn.Module:
        return self.accelerator.prepare_model(module) if self.accelerator is not None else module

    def prepare_optimizer(self, optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
        return self.accelerator.prepare_optimizer(optimizer) if self.accelerator is not None else optimizer

    def no_sync(self, module: torch.nn.Module):
        """Skip gradient all-reduce for a micro-batch that is not the step's last."""
        if self.accelerator is None:
            return contextlib.nullcontext()
        return self.accelerator.no_sync(module)

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum across processes (float64 so token counts stay exact)."""
        if self.world_size == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self._collective_device())
        torch.distributed.all_reduce(t)
        return t.tolist()

    def barrier(self) -> None:
        if self.world_size > 1:
            torch.distributed.barrier()

    def clip_grad_norm_(self, params, max_norm: float | None) -> torch.Tensor:
        """Clip (when `max_norm` is set) and return the global gradient norm."""
        if self.accelerator is not None:
            return self.accelerator.clip_grad_norm_(params, max_norm if max_norm else float("inf"))
        return torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm else float("inf"))

    def unwrap(self, module: torch.nn.Module) -> torch.nn.Module:
        return self.accelerator.unwrap_model(module) if self.accelerator is not None else module

    def _collective_device(self) -> torch.device:
        backend = torch.distributed.get_backend()
        return self.device if "nccl" in backend or "xccl" in backend else torch.device("cpu")


@lru_cache(maxsize=1)
def current() -> Distributed:
    """The process's view of the launch; creating it first sets the CUDA device of this rank."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Distributed()
    from accelerate import Accelerator, DistributedDataParallelKwargs

    # Processes may run different numbers of forward passes per step (a long micro-batch is split in
    # pieces), so DDP must not add a collective to each forward: buffers (rotary tables) are identical
    # everywhere and need no broadcast. Gradients are still all-reduced once per step.
    ddp = DistributedDataParallelKwargs(broadcast_buffers=False)
    # Without a GPU, accelerate only picks multi-process CPU (gloo) when told it runs on CPU.
    acc = Accelerator(cpu=not torch.cuda.is_available(), kwargs_handlers=[ddp])
    kind = str(acc.distributed_type).rsplit(".", 1)[-1]
    if kind not in {"NO", "MULTI_CPU", "MULTI_GPU", "MULTI_XPU", "MULTI_NPU", "MULTI_MLU", "MULTI_SDAA",
                    "MULTI_MUSA", "MULTI_HPU"}:
        raise UserError(f"accelerate's {kind} is not supported by the training loop yet (see "
                        "configs/accelerate/README.md); launch with a DDP config such as "
                        "configs/accelerate/ddp_gpu.yaml", where="accelerate config")
    return Distributed(rank=acc.process_index, world_size=acc.num_processes, accelerator=acc)
