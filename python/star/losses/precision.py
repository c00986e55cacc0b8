"""Loss arithmetic precision under mixed precision."""

from __future__ import annotations

import torch


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """Upcast half/bfloat16 (autocast outputs) to float32; keep float32 and float64 as they are."""
    return x.to(torch.promote_types(x.dtype, torch.float32))
