"""STAR under torch.compile (``train.compile``, also read by ``star eval`` and ``star extract``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..config_tree import ConfigError
from .star import STAR

DEFAULT_BACKEND = "inductor"  # train.compile_backend's default


class CompiledNetwork(nn.Module):
    """``network`` called through ``torch.compile``, its input checks that read values run first.

    The network traces in one graph (no graph breaks, in training and eval), but
    :meth:`STAR.check_inputs` skips the checks that read tensor values on the host
    while it is compiled: they run here, eagerly, before each compiled call, so bad
    input still gets its clear error. ``network`` stays a submodule (``train()`` and
    ``eval()`` reach it); checkpoint ``network`` itself, not this wrapper. ``run`` is
    the module to compile when one wraps ``network`` (DistributedDataParallel), else
    ``network``. ``mode`` and ``backend`` are torch.compile's (``reduce-overhead`` for CUDA
    graphs; a backend registered with ``torch._dynamo``, named by ``train.compile_backend``).
    """

    compiled: Callable[..., Any]  # set through __dict__ in __init__, not a submodule

    def __init__(
        self, network: STAR, run: nn.Module | None = None, mode: str | None = None, backend: str = DEFAULT_BACKEND
    ):
        super().__init__()
        if backend not in torch._dynamo.list_backends(exclude_tags=()):  # debug ones included
            raise ConfigError(
                f"train.compile_backend: unknown backend {backend!r}; choose one of "
                f"{', '.join(torch._dynamo.list_backends())} or a debug backend such as aot_eager or eager"
            )
        self.network = network
        # Kept out of the submodules: the compiled module shares network's parameters, and
        # registering it would list them twice in state_dict().
        self.__dict__["compiled"] = torch.compile(run if run is not None else network, mode=mode, backend=backend)

    def forward(self, frames: torch.Tensor, keypoints: torch.Tensor, modality: torch.Tensor):
        self.network.check_inputs(frames, keypoints, modality)
        return self.compiled(frames, keypoints, modality)
