"""Training-only style perturbations: input colour augmentation and AdaIN disturbance.

Both act per tracklet (all frames of a tracklet get the same perturbation /
partner), so the temporal consistency of a sequence is kept while its
modality "style" changes.
"""

from __future__ import annotations

import torch
from torch import nn

ADAIN_EPS = 1e-5


class StyleAugmentation(nn.Module):
    """Random intensity/colour change of the input frames (SPEC §3.1).

    Infrared tracklet: every frame x delta, delta ~ U[low, high]. Visible
    tracklet: each channel x U[low, high], then the channels are randomly
    permuted. The frames arrive normalised, so the change is applied to the
    raw intensities: with x = (r - mean) / std and r' = M r (M a per-tracklet
    3x3 matrix), x' = diag(1/std) M diag(std) x + (M mean - mean) / std, one
    affine colour map per tracklet.
    """

    def __init__(self, scale_range: tuple[float, float], mean, std):
        super().__init__()
        self.low, self.high = scale_range
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32), persistent=False)

    def _uniform(self, *shape: int) -> torch.Tensor:
        return self.mean.new_empty(shape).uniform_(self.low, self.high)

    def colour_maps(self, visible: torch.Tensor) -> torch.Tensor:
        """The per-tracklet 3x3 maps M on raw intensities, [B, 3, 3]."""
        b = visible.shape[0]
        eye = torch.eye(3, device=self.mean.device, dtype=self.mean.dtype)
        infrared = self._uniform(b, 1, 1) * eye
        # Row i of the permutation picks input channel perm[i]; columns carry the channel gains.
        perm = torch.rand(b, 3, device=self.mean.device).argsort(dim=1)
        colour = eye[perm] * self._uniform(b, 1, 3)
        return torch.where(visible.view(b, 1, 1), colour, infrared)

    def forward(self, frames: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """frames [B, T, 3, H, W] (normalised), visible bool [B] -> perturbed frames."""
        m = self.colour_maps(visible)
        a = m * self.std.view(1, 1, 3) / self.std.view(1, 3, 1)
        shift = (m @ self.mean - self.mean) / self.std  # [B, 3]
        out = torch.einsum("bij,btjhw->btihw", a.to(frames.dtype), frames)
        return out + shift.to(frames.dtype).view(-1, 1, 3, 1, 1)


def _channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    var, mean = torch.var_mean(x, dim=(2, 3), keepdim=True, correction=0)
    return mean, torch.sqrt(var + ADAIN_EPS)


def adain(content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """AdaIN(c, s) = sigma(s) (c - mu(c)) / sigma(c) + mu(s), per-channel spatial statistics.

    The style statistics are detached: the disturbance should perturb the
    content, not pull the partner's features towards it.
    """
    mu_c, sigma_c = _channel_stats(content)
    mu_s, sigma_s = _channel_stats(style.detach())
    return (content - mu_c) / sigma_c * sigma_s + mu_s


def style_partners(visible: torch.Tensor, same_modality: bool) -> torch.Tensor:
    """A random partner tracklet for every tracklet, [B] long.

    ``same_modality``: a random permutation inside each modality. Otherwise a
    random tracklet of the other modality, or of the same one if the batch
    holds a single modality.

    Without data-dependent shapes or host reads (no nonzero, no branch on the
    counts), so torch.compile traces it and CUDA graphs can capture it: the
    tracklets sorted by (modality, random key) list each modality's members in
    random order, infrared first.
    """
    b, device = visible.shape[0], visible.device
    group = visible.long()  # 0 infrared, 1 visible

    def shuffled() -> torch.Tensor:  # indices sorted by modality, random order inside each
        return torch.argsort(group * 2 + torch.rand(b, device=device))

    order = shuffled()
    # position i of two shuffled orders holds members of the same modality: pair them
    permutation = torch.empty_like(order).scatter_(0, order, shuffled())
    if same_modality:
        return permutation
    num_infrared = b - group.sum()
    others = torch.where(visible, num_infrared, b - num_infrared)  # members of the other modality
    first = torch.where(visible, 0, num_infrared)  # where they start in `order`
    pick = (torch.rand(b, device=device) * others).long().clamp(max=(others - 1).clamp(min=0))
    cross = order[(first + pick).clamp(max=b - 1)]
    return torch.where(others > 0, cross, permutation)


def partner_frames(partners: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Frame indices into the flattened [B*T] batch: frame t of tracklet b pairs with frame t of partners[b]."""
    t = torch.arange(num_frames, device=partners.device)
    return (partners.view(-1, 1) * num_frames + t).flatten()
