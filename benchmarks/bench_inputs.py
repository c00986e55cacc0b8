"""Inputs of the op benchmarks at STAR's training shapes.

STAR_BENCH_SMALL=1 shrinks every shape so the suite runs in seconds (CI uses
it as a smoke test with --benchmark-disable); the published numbers use the
full shapes.
"""

from __future__ import annotations

import os

import torch

import star_ext

SMALL = os.environ.get("STAR_BENCH_SMALL", "") == "1"
STAR_P = (0.7, 1.0, 3.0, 5.0, 7.0)
# The released STAR's generalized means, (mean_t x^p + 1e-12)^(1/p): no clamp
# (about half of the ReLU'd x below are exactly 0) and an additive floor.
GEM_RELEASE_SETTING = dict(eps=0.0, floor=1e-12)


def keypoint_pool_inputs(device):
    """N = 8 ids x 2 tracklets x 2 modalities x 12 frames = 384 maps of layer4 (2048 x 18 x 9), 17 joints."""
    n, c = (8, 64) if SMALL else (384, 2048)
    gen = torch.Generator().manual_seed(0)
    feat = torch.relu(torch.randn(n, c, 18, 9, generator=gen)).to(device).requires_grad_()
    kpts = torch.rand(n, 17, 3, generator=gen).to(device)  # from the pose store: no gradient
    return (feat, kpts), dict(sigma=0.1)


def guided_gem_pool_inputs(device):
    """B = 32 tracklets, T = 12 frames, C = 2048 channels, P = 5 exponents."""
    b, c = (4, 64) if SMALL else (32, 2048)
    gen = torch.Generator().manual_seed(0)
    x = torch.relu(torch.randn(b, 12, c, generator=gen)).to(device).requires_grad_()
    weight = torch.softmax(torch.randn(b, 5, c, generator=gen), dim=1).to(device).requires_grad_()
    p = torch.tensor(STAR_P, device=device).requires_grad_()
    return (x, weight, p), {}


def keypoint_graph_attention_inputs(device):
    """B = 32 tracklets, T = 12 frames (V = 204 nodes, E = 1034 edges), 2 heads x 16 channels."""
    b, num_frames = (4, 3) if SMALL else (32, 12)
    rowptr, col = star_ext.skeleton_graph(num_frames)
    v = rowptr.numel() - 1
    gen = torch.Generator().manual_seed(0)
    h = torch.randn(b, v, 2, 16, generator=gen).to(device).requires_grad_()
    a_src = torch.randn(b, v, 2, generator=gen).to(device).requires_grad_()
    a_dst = torch.randn(b, v, 2, generator=gen).to(device).requires_grad_()
    return (h, a_src, a_dst, rowptr.to(device), col.to(device)), {}


INPUTS = {
    "keypoint_pool": keypoint_pool_inputs,
    "guided_gem_pool": guided_gem_pool_inputs,
    "keypoint_graph_attention": keypoint_graph_attention_inputs,
}
