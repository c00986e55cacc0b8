"""The STAR network: two-stream backbone, frame-level correction, sequence-level guidance."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

import star_ext

from .backbone import TwoStreamResNet
from .bone_geometry import BoneEncoding
from .config import ModelConfig
from .frame_correction import FrameCorrection
from .guided_pooling import UnguidedPooling
from .heads import BNNeck
from .sequence_guidance import SequenceGuidance
from .skeleton_sequence import SkeletonSequenceEncoder
from .style import StyleAugmentation, StyleDisturbance


@dataclass
class StarOutput:
    """What a training forward returns: everything the losses need.

    Shapes: B tracklets, T frames, C feature dim, K identities. Fields of
    switched-off parts are None.
    """

    z: torch.Tensor  # [B, C] pooled sequence feature before the BN neck (triplet loss)
    logits: torch.Tensor  # [B, K] identity logits of BN(z)
    frame_logits: torch.Tensor  # [B, T, K] frame-level logits of the clean frames
    f: torch.Tensor  # [B, T, C] clean frame features GAP(layer4)
    frame_logits_dis: torch.Tensor | None = None  # [B, T, K] of the style-disturbed frames
    f_dis: torch.Tensor | None = None  # [B, T, C] style-disturbed frame features
    h_t: torch.Tensor | None = None  # [B, C] edge-based skeleton code (BiLSTM at frame T)
    g: torch.Tensor | None = None  # [B, C] joint-based skeleton code (keypoint graph)
    s: torch.Tensor | None = None  # [B, 2C] guide vector BN([h_T; g])
    pose_logits: torch.Tensor | None = None  # [B, K] pose-ID logits of s


def absent_outputs(cfg: ModelConfig) -> dict[str, str]:
    """The ``StarOutput`` fields a training-mode model of ``cfg`` leaves None, each with the
    ``ModelConfig`` switch (set to false) that leaves it out; switching that one on gives it."""
    absent = {}
    if not cfg.style.disturbance:
        absent.update(dict.fromkeys(("f_dis", "frame_logits_dis"), "style.disturbance"))
    if not cfg.sequence.enabled:
        # h_t comes from frame correction too, but consistency also needs g: the sequence level gives both
        absent.update(
            dict.fromkeys(
                ("g", "s", "pose_logits", *(() if cfg.frame_correction.enabled else ("h_t",))), "sequence.enabled"
            )
        )
    elif not cfg.sequence.pose_classifier:
        absent["pose_logits"] = "sequence.pose_classifier"
    return absent


class SequenceFeatures(NamedTuple):
    """What follows the backbone: frame features f [B, T, C], pooled z [B, C], and the skeleton
    codes h_T [B, C], g [B, C], s [B, 2C] and pose logits (None when their module is off)."""

    f: torch.Tensor
    z: torch.Tensor
    h_t: torch.Tensor | None = None
    g: torch.Tensor | None = None
    s: torch.Tensor | None = None
    pose_logits: torch.Tensor | None = None


class STAR(nn.Module):
    """Skeleton-guided spatial-temporal feature learning for video VI-ReID.

    ``forward(frames [B, T, 3, H, W], keypoints [B, T, 17, 3], modality [B])``
    with modality 0 = infrared, 1 = visible. Training mode returns a
    :class:`StarOutput`; eval mode the L2-normalised embedding BN(z), [B, C]
    (z itself with ``neck_feat: before``).

    Modules (None when switched off by the config): ``backbone``,
    ``style_augmentation``, ``style_disturbance``, ``skeleton_encoder`` (bone
    geometry + BiLSTM, used by both skeleton levels), ``frame_correction``,
    ``sequence_guidance``, ``temporal_pooling`` (the baseline's, without sequence
    guidance); the heads ``head`` (sequence BN neck) and ``frame_head`` (shared by
    clean and disturbed frames).
    """

    def __init__(self, cfg: ModelConfig, num_classes: int):
        # num_classes (training identities) is a property of the data, not of the architecture.
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"STAR: num_classes (training identities) must be >= 1, got {num_classes}")
        self.cfg = cfg
        self.num_classes = num_classes
        self.backbone = TwoStreamResNet(cfg.backbone.name, cfg.backbone.last_stride)
        dim = self.feature_dim = self.backbone.feature_dim
        style = cfg.style
        self.style_augmentation = StyleAugmentation(style) if style.augmentation else None
        self.style_disturbance = StyleDisturbance(style) if style.disturbance else None
        self.joint_branches = style.branch_batches == "joint"
        fc, seq, skel = cfg.frame_correction, cfg.sequence, cfg.skeleton
        encoding = BoneEncoding(skel.angle, skel.undetected == "zero", skel.aspect_scale)
        self.skeleton_encoder = (
            SkeletonSequenceEncoder(
                star_ext.COCO_BONES, dim // 2, fc.bone_embed_dim, encoding, skel.edge_code == "final_states"
            )
            if fc.enabled or seq.enabled
            else None
        )
        self.frame_correction = (
            FrameCorrection(dim, fc.num_heads, fc.attention_dropout, fc.offset) if fc.enabled else None
        )
        self.sequence_guidance = (
            SequenceGuidance(dim, num_classes, cfg.seq_len, seq, cfg.pooling, cfg.use_fused_ops)
            if seq.enabled
            else None
        )
        self.temporal_pooling = None if seq.enabled else UnguidedPooling(cfg.pooling, cfg.use_fused_ops)
        normal_init = cfg.neck_init == "normal"
        self.head = BNNeck(dim, num_classes, normal_init)
        self.frame_head = BNNeck(dim, num_classes, normal_init)

    def check_inputs(self, frames: torch.Tensor, keypoints: torch.Tensor, modality: torch.Tensor) -> torch.Tensor:
        """Validate shapes and flags; returns the modality as a bool tensor (True = visible)."""
        if not torch.is_tensor(frames) or frames.dim() != 5 or frames.shape[2] != 3:
            shape = tuple(frames.shape) if torch.is_tensor(frames) else type(frames).__name__
            raise ValueError(f"STAR: frames must be a tensor [B, T, 3, H, W], got {shape}")
        if not frames.is_floating_point():
            raise ValueError(f"STAR: frames must be floating point (normalised), got {frames.dtype}")
        b, t = frames.shape[:2]
        joints = star_ext.NUM_COCO_KEYPOINTS
        if not torch.is_tensor(keypoints) or keypoints.dim() != 4 or keypoints.shape[2:] != (joints, 3):
            shape = tuple(keypoints.shape) if torch.is_tensor(keypoints) else type(keypoints).__name__
            raise ValueError(f"STAR: keypoints must be a tensor [B, T, {joints}, 3] (x, y, conf), got {shape}")
        if keypoints.shape[:2] != (b, t):
            raise ValueError(
                f"STAR: keypoints have B, T = {tuple(keypoints.shape[:2])} but frames have B, T = {(b, t)}"
            )
        modality = torch.as_tensor(modality, device=frames.device)
        if modality.shape != (b,):
            raise ValueError(
                f"STAR: modality must have shape [B] = [{b}] (one flag per tracklet), got {tuple(modality.shape)}"
            )
        if modality.dtype != torch.bool:
            # The value check reads the flags on the host: torch.compile skips it (it would
            # break the graph), so a compiled caller runs check_inputs once outside the
            # compiled region first (star.models.compiled).
            if modality.is_floating_point() or (
                not torch.compiler.is_compiling() and not bool(((modality == 0) | (modality == 1)).all())
            ):
                raise ValueError(
                    "STAR: modality flags must be 0 (infrared) or 1 (visible) in a bool or integer tensor, "
                    f"got {modality.unique().tolist()} ({modality.dtype})"
                )
            modality = modality == 1
        if self.sequence_guidance is not None and t != self.cfg.seq_len:
            raise ValueError(
                f"STAR: the keypoint graph is built for seq_len = {self.cfg.seq_len} frames, got T = {t}; "
                "sample T = seq_len frames per tracklet or set seq_len"
            )
        return modality

    def _backbone(
        self, x: torch.Tensor, visible: torch.Tensor, num_frames: int
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Frames [N, 3, H, W] -> layer4 maps of the clean frames and, when disturbing, of the disturbed ones."""
        net = self.backbone
        frame_visible = visible.repeat_interleave(num_frames)
        x = net.layer2(net.layer1(net.stem(x, frame_visible)))
        disturbance = self.style_disturbance
        if not self.training or disturbance is None:
            return net.layer4(net.layer3(x)), None
        disturbed = disturbance.same_modality(x, visible, num_frames)
        if self.joint_branches:  # one batch through the shared stages: BatchNorm sees both branches
            clean, disturbed = net.layer3(torch.cat([x, disturbed])).chunk(2)
        else:
            clean, disturbed = net.layer3(x), net.layer3(disturbed)
        disturbed = disturbance.cross_modality(clean, disturbed, visible, num_frames)
        if self.joint_branches:
            clean, disturbed = net.layer4(torch.cat([clean, disturbed])).chunk(2)
            return clean, disturbed
        return net.layer4(clean), net.layer4(disturbed)

    def forward(self, frames: torch.Tensor, keypoints: torch.Tensor, modality: torch.Tensor):
        """Training: :class:`StarOutput`; eval: L2-normalised BN(z) [B, C]. See the class docstring."""
        visible = self.check_inputs(frames, keypoints, modality)
        b, t, _, height, width = frames.shape
        if self.training and self.style_augmentation is not None:
            frames = self.style_augmentation(frames, visible)
        maps, maps_dis = self._backbone(frames.flatten(0, 1), visible, t)
        seq = self.sequence_features(maps, keypoints, aspect=width / height)
        embedding, logits = self.head(seq.z)
        if not self.training:
            return self._eval_embedding(embedding, seq.z)
        out = StarOutput(
            z=seq.z,
            logits=logits,
            frame_logits=self._frame_logits(seq.f),
            f=seq.f,
            h_t=seq.h_t,
            g=seq.g,
            s=seq.s,
            pose_logits=seq.pose_logits,
        )
        if maps_dis is not None:
            out.f_dis = maps_dis.mean(dim=(2, 3)).view(b, t, -1)
            out.frame_logits_dis = self._frame_logits(out.f_dis)
        return out

    def sequence_features(self, maps: torch.Tensor, keypoints: torch.Tensor, aspect: float) -> SequenceFeatures:
        """Everything after the backbone up to z: clean layer4 maps [B*T, C, h, w], keypoints
        [B, T, 17, 3], frame width / height -> :class:`SequenceFeatures`."""
        b, t = keypoints.shape[:2]
        f = maps.mean(dim=(2, 3)).view(b, t, -1)  # after ReLU: >= 0
        h_seq = h_t = None
        if self.skeleton_encoder is not None:
            h_seq, h_t = self.skeleton_encoder(keypoints, aspect=aspect)
        corrected = self.frame_correction(f, h_seq) if self.frame_correction is not None else f
        if self.sequence_guidance is not None:
            z, g, s, pose_logits = self.sequence_guidance(corrected, keypoints, h_t, maps)
            return SequenceFeatures(f, z, h_t, g, s, pose_logits)
        assert self.temporal_pooling is not None
        return SequenceFeatures(f, self.temporal_pooling(corrected), h_t)

    def embed_from_maps(self, maps: torch.Tensor, keypoints: torch.Tensor, aspect: float) -> torch.Tensor:
        """The eval embedding from the clean layer4 maps (what ``forward`` gives in eval mode after the
        backbone): lets analyses differentiate w.r.t. the keypoints without rerunning the backbone."""
        z = self.sequence_features(maps, keypoints, aspect).z
        return self._eval_embedding(self.head(z)[0], z)

    def _eval_embedding(self, embedding: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return F.normalize(embedding if self.cfg.neck_feat == "after" else z, dim=1)

    def _frame_logits(self, f: torch.Tensor) -> torch.Tensor:
        return self.frame_head(f.flatten(0, 1))[1].view(*f.shape[:2], -1)
