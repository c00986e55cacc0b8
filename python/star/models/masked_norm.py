"""BatchNorm over a masked subset of the batch, without data-dependent shapes."""

from __future__ import annotations

import torch
from torch import nn


def masked_batch_norm(bn: nn.BatchNorm2d, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``bn`` applied to x [N, C, H, W] as if the batch held only the samples where mask [N] is True.

    Gives those samples what ``bn(x[mask])`` gives them, and updates ``bn``'s running
    statistics as that call would, without selecting them: every shape stays fixed and
    nothing is read back to the host, so torch.compile traces it in one graph and CUDA
    graphs can capture it. The other samples' outputs are not meaningful. A mask with
    no True leaves the running statistics unchanged.
    """
    if not (bn.training or bn.running_mean is None):
        return bn(x)  # running statistics: per sample, the mask changes nothing
    # statistics in float32 at least, as batch_norm keeps them for float16 input under autocast
    xs = x.to(torch.promote_types(x.dtype, torch.float32))
    weights = mask.to(xs.dtype).view(-1, 1, 1, 1)
    count = weights.sum() * x.shape[2] * x.shape[3]  # values per channel
    denom = count.clamp(min=1)
    mean = (xs * weights).sum(dim=(0, 2, 3)) / denom
    centred = xs - mean.view(1, -1, 1, 1)
    var = (centred * centred * weights).sum(dim=(0, 2, 3)) / denom  # biased, as batch_norm normalises
    out = centred * torch.rsqrt(var + bn.eps).view(1, -1, 1, 1)
    if bn.affine:
        out = out * bn.weight.view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1)
    if bn.track_running_stats:
        _update_running_stats(bn, mean, var, count)
    return out.to(x.dtype)


@torch.no_grad()
def _update_running_stats(bn: nn.BatchNorm2d, mean: torch.Tensor, var: torch.Tensor, count: torch.Tensor) -> None:
    # track_running_stats (checked by the caller) means BatchNorm made these buffers
    assert bn.running_mean is not None and bn.running_var is not None and bn.num_batches_tracked is not None
    seen = count > 0
    tracked = bn.num_batches_tracked + seen.to(bn.num_batches_tracked.dtype)
    # momentum None: the cumulative average over the batches seen so far
    momentum = bn.momentum if bn.momentum is not None else 1.0 / tracked.clamp(min=1).to(mean.dtype)
    unbiased = var * count / (count - 1).clamp(min=1)
    new_mean = torch.lerp(bn.running_mean, mean.to(bn.running_mean.dtype), momentum)
    new_var = torch.lerp(bn.running_var, unbiased.to(bn.running_var.dtype), momentum)
    bn.running_mean.copy_(torch.where(seen, new_mean, bn.running_mean))
    bn.running_var.copy_(torch.where(seen, new_var, bn.running_var))
    bn.num_batches_tracked.copy_(tracked)
