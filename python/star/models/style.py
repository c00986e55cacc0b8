"""Training-only style perturbations: input colour augmentation and the AdaIN disturbance (SAADG).

Both come in the authors' released form (a new draw for every frame) and in a
per-tracklet form (all frames of a tracklet share the perturbation or partner, so
the sequence stays temporally consistent); ``StyleConfig`` chooses.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import StyleConfig

# AdaIN's sigma: std + 1e-6 with the unbiased std (the release), sqrt(var + 1e-5) with the biased one.
UNBIASED_STD_EPS = 1e-6
BIASED_VAR_EPS = 1e-5


class StyleAugmentation(nn.Module):
    """Random intensity/colour change of the input frames.

    Infrared: x delta, delta ~ U[low, high]. Visible: each channel x U[low, high],
    then the channels randomly permuted. One 3x3 map M per frame (``augment_per:
    frame``) or per tracklet. On the normalised tensor (``augment_space:
    normalised``, the release) x' = M x; on raw intensities, with x = (r - mean) / std
    and r' = M r: x' = diag(1/std) M diag(std) x + (M mean - mean) / std.
    """

    mean: torch.Tensor  # buffers, registered in __init__
    std: torch.Tensor

    def __init__(self, cfg: StyleConfig):
        super().__init__()
        self.low, self.high = cfg.scale_range
        self.per_frame = cfg.augment_per == "frame"
        self.raw = cfg.augment_space == "raw"
        self.register_buffer("mean", torch.tensor(cfg.mean, dtype=torch.float32), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.std, dtype=torch.float32), persistent=False)

    def _uniform(self, *shape: int) -> torch.Tensor:
        return self.mean.new_empty(shape).uniform_(self.low, self.high)

    def colour_maps(self, visible: torch.Tensor) -> torch.Tensor:
        """The random 3x3 maps M of N units (frames or tracklets), visible bool [N] -> [N, 3, 3].

        Row i of a visible unit's map picks input channel perm[i] with that channel's gain.
        """
        n = visible.shape[0]
        eye = torch.eye(3, device=self.mean.device, dtype=self.mean.dtype)
        infrared = self._uniform(n, 1, 1) * eye
        perm = torch.rand(n, 3, device=self.mean.device).argsort(dim=1)
        colour = eye[perm] * self._uniform(n, 1, 3)
        return torch.where(visible.view(n, 1, 1), colour, infrared)

    def forward(self, frames: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """frames [B, T, 3, H, W] (normalised), visible bool [B] -> perturbed frames."""
        b, t = frames.shape[:2]
        if self.per_frame:
            m = self.colour_maps(visible.repeat_interleave(t)).view(b, t, 3, 3)
        else:
            m = self.colour_maps(visible).view(b, 1, 3, 3).expand(b, t, 3, 3)
        if not self.raw:
            return torch.einsum("btij,btjhw->btihw", m.to(frames.dtype), frames)
        a = m * self.std.view(1, 3) / self.std.view(3, 1)  # [i, j]: M_ij std_j / std_i
        shift = ((m @ self.mean - self.mean) / self.std).to(frames.dtype)  # [B, T, 3]
        out = torch.einsum("btij,btjhw->btihw", a.to(frames.dtype), frames)
        return out + shift.view(b, t, 3, 1, 1)


def adain(
    content: torch.Tensor, style: torch.Tensor, unbiased: bool = True, detach_style: bool = False
) -> torch.Tensor:
    """AdaIN(c, s) = sigma(s) (c - mu(c)) / sigma(c) + mu(s), per-channel spatial statistics of [N, C, H, W].

    ``unbiased``: sigma = unbiased std + 1e-6 (the release); else sqrt(biased var + 1e-5).
    ``detach_style``: no gradient into the style partner (the release lets it through).
    """
    if detach_style:
        style = style.detach()
    mu_c, sigma_c = _channel_stats(content, unbiased)
    mu_s, sigma_s = _channel_stats(style, unbiased)
    return sigma_s * (content - mu_c) / sigma_c + mu_s


def _channel_stats(x: torch.Tensor, unbiased: bool) -> tuple[torch.Tensor, torch.Tensor]:
    if unbiased:
        std, mean = torch.std_mean(x, dim=(2, 3), keepdim=True, correction=1)
        return mean, std + UNBIASED_STD_EPS
    var, mean = torch.var_mean(x, dim=(2, 3), keepdim=True, correction=0)
    return mean, torch.sqrt(var + BIASED_VAR_EPS)


def random_partners(group: torch.Tensor, same_group: bool) -> torch.Tensor:
    """A random partner for each of N items, [N] long, without data-dependent shapes.

    ``group`` bool [N]. Same group: a uniformly random permutation inside each group.
    Otherwise a random bijection between the groups when they have equal sizes (a
    batch of the sampler); the surplus items of a larger group, and every item of a
    single-group batch, get partners of their own group.
    """
    g = group.to(torch.float64)
    other = g if same_group else 1 - g
    # Sorting by (group, random key) orders the items group by group, randomly inside each group.
    order = torch.argsort(2 * g + torch.rand(g.shape, dtype=torch.float64, device=g.device))
    partner_order = torch.argsort(2 * other + torch.rand(g.shape, dtype=torch.float64, device=g.device))
    return torch.empty_like(order).scatter_(0, order, partner_order)


def partner_frames(partners: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Frame indices into the flattened [B*T] batch: frame t of tracklet b pairs with frame t of partners[b]."""
    t = torch.arange(num_frames, device=partners.device)
    return (partners.view(-1, 1) * num_frames + t).flatten()


class StyleDisturbance(nn.Module):
    """SAADG's AdaIN disturbance of the shared stages (no parameters).

    After layer2: AdaIN with a same-modality partner; layer3 on the disturbed
    maps; then AdaIN with a cross-modality partner whose style comes from its
    disturbed (release) or clean layer3 maps; layer4 gives the disturbed maps.
    Partners are drawn per frame over all frames of the batch (release) or per
    tracklet (frame t with the partner's frame t). :meth:`partners` is the one
    place randomness enters (tests override it).
    """

    def __init__(self, cfg: StyleConfig):
        super().__init__()
        self.per_frame = cfg.partners_per == "frame"
        self.unbiased = cfg.adain_std == "unbiased"
        self.detach_style = cfg.adain_detach_style
        self.cross_from_disturbed = cfg.cross_source == "disturbed"

    def partners(self, visible: torch.Tensor, num_frames: int, same_modality: bool) -> torch.Tensor:
        """Partner frame of every frame of the flattened [B*T] batch, [B*T] long; visible bool [B]."""
        if self.per_frame:
            return random_partners(visible.repeat_interleave(num_frames), same_modality)
        return partner_frames(random_partners(visible, same_modality), num_frames)

    def same_modality(self, x: torch.Tensor, visible: torch.Tensor, num_frames: int) -> torch.Tensor:
        """The layer2 maps [B*T, C, h, w] restyled by same-modality partners."""
        return self._adain(x, x[self.partners(visible, num_frames, same_modality=True)])

    def cross_modality(
        self, clean: torch.Tensor, disturbed: torch.Tensor, visible: torch.Tensor, num_frames: int
    ) -> torch.Tensor:
        """The disturbed layer3 maps restyled by cross-modality partners' clean or disturbed maps."""
        source = disturbed if self.cross_from_disturbed else clean
        return self._adain(disturbed, source[self.partners(visible, num_frames, same_modality=False)])

    def _adain(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        return adain(content, style, self.unbiased, self.detach_style)
