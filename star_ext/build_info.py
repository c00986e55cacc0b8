"""What star_ext was built with and which kernels are registered."""

from __future__ import annotations

import torch

from . import _loader

OPS = ("keypoint_pool", "guided_gem_pool", "keypoint_graph_attention")


def _has_kernel(op: str, key: str) -> bool:
    return bool(torch._C._dispatch_has_kernel_for_dispatch_key(f"star::{op}", key))


def build_info() -> dict:
    """Versions of the running torch, the build record of _C, and per op the devices with a kernel."""
    kernels = {op: {"cpu": False, "cuda": False} for op in OPS}
    if _loader.HAS_C:
        kernels = {op: {"cpu": _has_kernel(op, "CPU"), "cuda": _has_kernel(op, "CUDA")} for op in OPS}
    return {
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "extension_loaded": _loader.HAS_C,
        "fallback_reason": _loader.FALLBACK_REASON,
        "built_with": _loader.read_build_info(),
        "kernels": kernels,
    }


def format_build_info(info: dict) -> str:
    built = info["built_with"] or {}
    lines = [
        f"torch             {info['torch']} (CUDA {info['torch_cuda'] or 'none'}; "
        f"GPU {'available' if info['cuda_available'] else 'not available'})",
        f"star_ext._C       {'loaded' if info['extension_loaded'] else 'NOT loaded: reference fallback'}",
    ]
    if built:
        lines.append(
            f"built with        torch {built.get('torch')}, CUDA {built.get('cuda') or 'none'}, "
            f"archs {built.get('cuda_archs') or '-'}, at {built.get('built_at')}"
        )
    if info["fallback_reason"]:
        lines.append(f"reason            {info['fallback_reason']}")
    lines.append("op                         CPU    CUDA")
    for op, devices in info["kernels"].items():
        lines.append(f"{op:<26} {'yes' if devices['cpu'] else 'no':<6} {'yes' if devices['cuda'] else 'no'}")
    return "\n".join(lines)
