"""Weight-only INT8 for `torch-fast` (`model.quantize: int8-weight`): the text encoder's and decoder's linear layers
and the sliced `lm_head` keep their weights as int8 rows with one float scale per row (symmetric, per output channel);
activations stay in the model's dtype (FP16 on CUDA, FP32 on CPU). The vision tower is left as it is (convolutions,
compute-bound).

Why torch's own `aten::_weight_int8pack_mm` rather than torchao: it ships inside torch (nothing more to install next
to JetPack's torch build), it is a plain aten op that a CUDA graph captures, and torchao's int8 weight-only path is
a dequantize + matmul unless `torch.compile` fuses it, which is what the fallback here does anyway.

The op has a CPU kernel and, from torch 2.9 on, a CUDA kernel that computes one output per warp: fast for the few
rows of a decode step (the weights are read once, as int8), slow for the hundreds of rows of the encoder. So a layer
uses the kernel for at most `KERNEL_MAX_ROWS` rows and otherwise (or where the op has no kernel for the device, e.g.
an older JetPack torch) dequantizes its weight to the activations' dtype and calls `F.linear`: same results within
rounding, the memory saving kept, the speed-up lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

KERNEL_MAX_ROWS = 16  # batch x tokens of one decode step; the encoder's hundreds of rows take the dequantize path
INT8_MAX = 127


def has_int8_kernel(device: torch.device) -> bool:
    """Whether this torch build has `_weight_int8pack_mm` for the device's type (CUDA: torch >= 2.9)."""
    key = {"cpu": "CPU", "cuda": "CUDA"}.get(device.type)
    if key is None or not hasattr(torch, "_weight_int8pack_mm"):
        return False
    try:
        return bool(torch._C._dispatch_has_kernel_for_dispatch_key("aten::_weight_int8pack_mm", key))
    except RuntimeError:  # an op this torch does not know
        return False


def quantize_rows(weight: torch.Tensor, rows_per_chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-row INT8: (int8 N x K, float32 scale N) with weight ~= q * scale[:, None]. A chunk of rows at a
    time, so the float temporaries stay small (whole-layer ones, freed, stay in the C allocator's heap as RSS)."""
    q = torch.empty(weight.shape, dtype=torch.int8, device=weight.device)
    scale = torch.empty(weight.shape[0], dtype=torch.float32, device=weight.device)
    for start in range(0, weight.shape[0], rows_per_chunk):
        rows = weight[start:start + rows_per_chunk].detach().float()
        chunk_scale = (rows.abs().amax(dim=1) / INT8_MAX).clamp_(min=torch.finfo(torch.float32).tiny)
        q[start:start + rows_per_chunk] = rows.div(chunk_scale[:, None]).round_().clamp_(-INT8_MAX, INT8_MAX)
        scale[start:start + rows_per_chunk] = chunk_scale
    return q, scale


class Int8Linear(nn.Module):
    """`y = x W^T + b` with W held as int8 rows and a float32 scale per row; the bias stays in the model's dtype."""

    qweight: torch.Tensor
    scale: torch.Tensor
    bias: torch.Tensor | None

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        super().__init__()
        q, scale = quantize_rows(weight)
        self.out_features, self.in_features = q.shape
        self.register_buffer("qweight", q)
        self.register_buffer("scale", scale)
        self.register_buffer("bias", None if bias is None else bias.detach().clone())
        self.kernel = has_int8_kernel(q.device)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Int8Linear:
        return cls(linear.weight, linear.bias)

    def dequantized(self, dtype: torch.dtype) -> torch.Tensor:
        return self.qweight.to(dtype) * self.scale.to(dtype)[:, None]

    def uses_kernel(self, rows: int) -> bool:
        return self.kernel and rows <= KERNEL_MAX_ROWS

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        if self.uses_kernel(flat.shape[0]):
            out = torch._weight_int8pack_mm(flat.contiguous(), self.qweight, self.scale.to(x.dtype))
        else:
            out = F.linear(flat, self.dequantized(x.dtype))
        if self.bias is not None:
            out = out + self.bias
        return out.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, kernel={self.kernel}"


def replace_linears(root: nn.Module) -> int:
    """Swap every `nn.Linear` below `root` for an `Int8Linear` in place; returns how many were swapped."""
    swapped = 0
    for parent in list(root.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear:  # subclasses (LoRA layers and the like) are not plain weights
                setattr(parent, name, Int8Linear.from_linear(child))
                swapped += 1
    return swapped


def int8_weight(model: Any, decoder: Any) -> dict[str, Any]:
    """Quantize the text encoder and decoder of a loaded Florence-2 (`model`) and the fast decoder's sliced lm_head
    (`decoder`, a `FastDecoder` sharing the model's layers); returns what was done, for the log and benchmarks."""
    language = model.model.language_model
    before = _linear_bytes(language) + decoder.lm_weight.numel() * decoder.lm_weight.element_size()
    swapped = replace_linears(language.encoder) + replace_linears(language.decoder)
    decoder.quantize_lm_head()
    after = _int8_bytes(language) + _int8_bytes(decoder.lm_int8)
    device = decoder.lm_int8.qweight.device
    if device.type == "cuda":
        torch.cuda.empty_cache()  # the float weights' blocks back to the driver (a Jetson shares them with the CPU)
    info = {"mode": "int8-weight", "layers": swapped + 1, "weight_mb_before": round(before / 2**20, 1),
            "weight_mb_after": round(after / 2**20, 1), "kernel": has_int8_kernel(device),
            "kernel_max_rows": KERNEL_MAX_ROWS}
    log.info("torch-fast int8-weight: %d layers, %.1f MB -> %.1f MB of weights, _weight_int8pack_mm kernel on %s: %s",
             info["layers"], info["weight_mb_before"], info["weight_mb_after"], device.type, info["kernel"])
    if device.type == "cpu":
        log.warning("int8-weight on CPU saves memory but decodes slower than FP32; for CPU speed export the model "
                    "to ONNX INT8 (backend onnx)")
    return info


def _linear_bytes(root: nn.Module) -> int:
    return sum(m.weight.numel() * m.weight.element_size() for m in root.modules() if type(m) is nn.Linear)


def _int8_bytes(root: nn.Module) -> int:
    layers = [root] if isinstance(root, Int8Linear) else [m for m in root.modules() if isinstance(m, Int8Linear)]
    return sum(m.qweight.numel() + m.scale.numel() * 4 for m in layers)


# mode -> what it does to a loaded torch-fast detector's (model, decoder); "none" leaves them as they are
QUANTIZERS: dict[str, Callable[[Any, Any], dict[str, Any]] | None] = {"none": None, "int8-weight": int8_weight}
QUANTIZE_MODES = tuple(QUANTIZERS)
