"""A preallocated key/value cache with one slot per running sequence.

Why not transformers' DynamicCache: it grows by `torch.cat` on every decoding step, copying the
whole cache (on a small model with 1k-token few-shot prompts that copy costs as much as the matmuls),
and all its rows share one length, so a finished row can only be removed, not replaced. Here every
slot has its own length; a new prompt is prefilled on its own and copied into a free slot while the
others keep decoding (continuous batching). Active sequences are kept in slots 0..n-1 so the
attention reads a plain slice of the buffers.

The cache speaks the small part of the transformers `Cache` protocol that attention layers use:
`update(key_states, value_states, layer_idx, ...) -> (keys, values)`. The caller passes explicit
`position_ids` and a 4D attention mask, so no other cache method is consulted.

Both caches reach the attention layers through the forward's `cache=` keyword. A model that took
that keyword into `**kwargs` and ignored it would run without the cache and give wrong answers
silently, so every forward that should fill a cache is checked to have written each layer once
(`prefilled_layers`, `SlotCache.check_decoded`).
"""

from __future__ import annotations

import torch


class SlotCache:
    is_compileable = False

    def __init__(self, num_layers: int, slots: int, capacity: int):
        self.num_layers = num_layers
        self.slots = slots
        self.capacity = capacity
        self.keys: list[torch.Tensor | None] = [None] * num_layers
        self.values: list[torch.Tensor | None] = [None] * num_layers
        # Set by `prepare_decode` before each decoding forward.
        self._rows = 0
        self._row_index: torch.Tensor | None = None
        self._write_pos: torch.Tensor | None = None
        self._span = 0
        self._layers_written = 0

    # -- the part of the transformers Cache protocol attention layers call -------------------------
    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args, **kwargs):
        """Write the new tokens of each active row at its own positions;
        return keys/values of the active rows."""
        self._layers_written += 1
        if self.keys[layer_idx] is None:
            self._allocate(layer_idx, key_states, value_states)
        k_buf, v_buf = self.keys[layer_idx], self.values[layer_idx]
        # [rows, heads, width, dim] -> written at [row, :, position] for each of the row's positions.
        k_buf[self._row_index, :, self._write_pos] = key_states.transpose(1, 2)
        v_buf[self._row_index, :, self._write_pos] = value_states.transpose(1, 2)
        return k_buf[: self._rows, :, : self._span], v_buf[: self._rows, :, : self._span]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self._span

    def __len__(self) -> int:
        return self.num_layers

    # -- slot management ------------------------------------------------------------------------
    def _allocate(self, layer_idx: int, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        kv_heads, head_dim = key_states.shape[1], key_states.shape[3]
        shape = (self.slots, kv_heads, self.capacity, head_dim)
        self.keys[layer_idx] = torch.zeros(shape, dtype=key_states.dtype, device=key_states.device)
        self.values[layer_idx] = torch.zeros(
            (self.slots, value_states.shape[1], self.capacity, value_states.shape[3]),
            dtype=value_states.dtype,
            device=value_states.device,
        )

    def prepare_decode(self, rows: int, positions: torch.Tensor, span: int) -> None:
        """Next forward: row i (of 0..rows-1) writes its tokens at `positions[i]` ([rows, width]);
        attention spans the first `span` columns."""
        self._rows = rows
        self._row_index = torch.arange(rows, device=positions.device)[:, None]
        self._write_pos = positions
        self._span = span
        self._layers_written = 0

    def check_decoded(self) -> None:
        """Raise unless the forward since `prepare_decode` wrote every layer exactly once."""
        if self._layers_written != self.num_layers:
            raise RuntimeError(f"the decoding forward wrote {self._layers_written} cache entries for a model "
                               f"of {self.num_layers} layers: the model did not use the cache passed as "
                               "cache=")

    def store_prefill(self, slot: int, layer_kv: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Copy a prompt's keys/values (batch of one, from a regular cache) into `slot`."""
        for layer_idx, (k, v) in enumerate(layer_kv):
            if self.keys[layer_idx] is None:
                self._allocate(layer_idx, k, v)
            length = k.shape[2]
            self.keys[layer_idx][slot, :, :length] = k[0]
            self.values[layer_idx][slot, :, :length] = v[0]

    def copy_slot(self, src: int, dst: int, length: int) -> None:
        """Duplicate the first `length` positions of slot `src` into slot `dst`
        (a shared prompt, or compaction)."""
        for layer_idx in range(self.num_layers):
            if self.keys[layer_idx] is None:
                continue
            self.keys[layer_idx][dst, :, :length] = self.keys[layer_idx][src, :, :length]
            self.values[layer_idx][dst, :, :length] = self.values[layer_idx][src, :, :length]


def prefilled_layers(cache, num_layers: int, length: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`layer_kv_pairs` of a cache that a forward over `length` new tokens was given as cache=, after
    checking that it holds one entry per layer with those `length` positions."""
    pairs = layer_kv_pairs(cache)
    lengths = [None if k is None else k.shape[2] for k, _ in pairs]
    if lengths != [length] * num_layers:
        raise RuntimeError(f"a prefill of {length} tokens left cache entries of lengths {lengths} for a "
                           f"model of {num_layers} layers: the model did not fill the cache passed as cache=")
    return pairs


def layer_kv_pairs(cache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(keys, values) per layer from a transformers DynamicCache, across the API versions."""
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    if hasattr(cache, "key_cache"):
        return list(zip(cache.key_cache, cache.value_cache, strict=True))
    return [(k, v) for k, v in cache]
