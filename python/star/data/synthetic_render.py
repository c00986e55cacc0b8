"""Rendering of the synthetic VVI dataset: walking stick figures seen by visible and infrared cameras.

Identity lives in what a skeleton sees: body proportions and gait (stride, knee
flexion, arm swing, elbow bend, cadence, bounce, lean). Clothing colour is only
weakly informative (shared by a group of identities, redrawn per tracklet) and
absent from infrared frames, whose clothing intensity is drawn independently of
the colour. Viewpoint, scale, background, blur, noise and occlusion vary per tracklet.

Coordinates: body frame (lateral l, person's left positive; forward z; up v) in
units of stature; image coordinates are continuous pixels (pixel k covers [k, k+1)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from .skeleton import NUM_COCO_KEYPOINTS

_SHIFT = 4  # sub-pixel bits for cv2 drawing
_ONE = 1 << _SHIFT


@dataclass(frozen=True)
class Identity:
    """Body proportions (units of stature) and gait of one person."""

    head: float
    neck: float
    torso: float
    shoulder: float  # half width
    hip: float  # half width
    upper_arm: float
    forearm: float
    thigh: float
    shin: float
    limb: float  # limb thickness
    stride: float  # hip swing amplitude, rad
    knee: float  # knee flexion amplitude, rad
    arm_swing: float  # rad
    elbow: float  # constant elbow bend, rad
    cadence: float  # gait cycles per frame
    bounce: float
    lean: float  # forward torso lean, rad

    @staticmethod
    def sample(rng: np.random.Generator) -> Identity:
        u = rng.uniform
        legs = u(0.40, 0.54)
        leg_ratio = u(0.85, 1.2)  # thigh / shin
        arms = u(0.28, 0.40)
        arm_ratio = u(0.8, 1.25)
        return Identity(
            head=u(0.05, 0.075),
            neck=u(0.02, 0.05),
            torso=u(0.25, 0.36),
            shoulder=u(0.07, 0.13),
            hip=u(0.045, 0.09),
            upper_arm=arms * arm_ratio / (1 + arm_ratio),
            forearm=arms / (1 + arm_ratio),
            thigh=legs * leg_ratio / (1 + leg_ratio),
            shin=legs / (1 + leg_ratio),
            limb=u(0.028, 0.06),
            stride=u(0.2, 0.6),
            knee=u(0.2, 1.0),
            arm_swing=u(0.05, 0.75),
            elbow=u(0.05, 0.9),
            cadence=1.0 / u(8.0, 18.0),
            bounce=u(0.0, 0.025),
            lean=u(-0.12, 0.18),
        )

    @property
    def stature(self) -> float:
        return self.thigh + self.shin + self.torso + self.neck + 2 * self.head


@dataclass(frozen=True)
class View:
    """How one tracklet is filmed: yaw, figure height in pixels, position, motion of the crop."""

    yaw: float  # 0: facing the camera, +-pi/2: side view
    scale: float  # pixels per stature unit
    cx: float  # figure centre x, pixels
    baseline: float  # ground y, pixels
    phase: float  # gait phase at frame 0
    speed: float  # multiplies the identity's cadence


def pose3d(ident: Identity, phase: float) -> np.ndarray:
    """[17, 3] joint positions (l, z, v) of the COCO-17 skeleton at a gait phase."""
    s, lean = ident, ident.lean
    v_hip = (s.thigh + s.shin) * 0.97 + s.bounce * math.cos(2 * phase)
    hip_c = np.array([0.0, 0.0, v_hip])
    up = np.array([0.0, math.sin(lean), math.cos(lean)])
    sh_c = hip_c + s.torso * up
    head_c = sh_c + (s.neck + s.head) * up
    j = np.zeros((NUM_COCO_KEYPOINTS, 3))

    def limb(base: np.ndarray, angle: float, length: float) -> np.ndarray:
        return base + length * np.array([0.0, math.sin(angle), -math.cos(angle)])

    for side, sign, ph in ((0, 1.0, phase), (1, -1.0, phase + math.pi)):  # 0 = left, 1 = right
        swing = s.stride * math.sin(ph)
        flex = s.knee * (0.15 + 0.85 * max(0.0, math.cos(ph)))
        hip = hip_c + [sign * s.hip, 0.0, 0.0]
        knee = limb(hip, swing, s.thigh)
        j[11 + side], j[13 + side], j[15 + side] = hip, knee, limb(knee, swing - flex, s.shin)
        arm = -s.arm_swing * math.sin(ph)  # an arm swings against the leg of its side
        shoulder = sh_c + [sign * s.shoulder, 0.0, 0.0]
        elbow = limb(shoulder, arm, s.upper_arm)
        j[5 + side], j[7 + side], j[9 + side] = shoulder, elbow, limb(elbow, arm + s.elbow, s.forearm)
        j[1 + side] = head_c + [sign * 0.35 * s.head, 0.75 * s.head, 0.2 * s.head]  # eyes
        j[3 + side] = head_c + [sign * 0.85 * s.head, -0.05 * s.head, 0.05 * s.head]  # ears
    j[0] = head_c + [0.0, 0.9 * s.head, -0.1 * s.head]  # nose
    return j


def project(joints: np.ndarray, view: View) -> tuple[np.ndarray, np.ndarray]:
    """Image points [17, 2] (continuous pixels) and depth [17] (larger = nearer the camera)."""
    c, s = math.cos(view.yaw), math.sin(view.yaw)
    x = joints[:, 0] * c + joints[:, 1] * s
    depth = -joints[:, 0] * s + joints[:, 1] * c
    pts = np.stack([view.cx + view.scale * x, view.baseline - view.scale * joints[:, 2]], axis=1)
    return pts, depth


# Drawn parts: (joint a, joint b, width factor, colour slot). Slots: 0 upper clothing,
# 1 lower clothing, 2 skin, 3 sleeves (upper clothing or skin, per tracklet).
_LIMBS = (
    (5, 7, 0.85, 0),
    (6, 8, 0.85, 0),
    (7, 9, 0.7, 3),
    (8, 10, 0.7, 3),
    (11, 13, 1.15, 1),
    (12, 14, 1.15, 1),
    (13, 15, 0.95, 1),
    (14, 16, 0.95, 1),
)


def _pt(p: np.ndarray) -> tuple[int, int]:
    # continuous pixel coordinate -> cv2 fixed point (cv2 puts pixel centres on integers)
    return int(round((p[0] - 0.5) * _ONE)), int(round((p[1] - 0.5) * _ONE))


def draw_figure(
    img: np.ndarray,
    pts: np.ndarray,
    depth: np.ndarray,
    ident: Identity,
    scale: float,
    colours,
    stripes: tuple[float, ...] = (),
    stripe_colour=0.0,
) -> None:
    """Draw the figure in place, far parts first.

    ``colours`` has 4 entries (see ``_LIMBS``), scalars for one-channel images or BGR
    tuples; ``stripes`` are heights (fractions from shoulders to hips) of torso stripes.
    """
    limb_px = max(1.0, ident.limb * scale)
    # (depth, kind, geometry: point pair or [4, 2] polygon, size: int line width or float head radius, colour)
    parts: list[tuple[float, str, Any, Any, Any]] = []
    for a, b, wf, slot in _LIMBS:
        parts.append(
            ((depth[a] + depth[b]) / 2, "line", (pts[a], pts[b]), max(1, int(round(limb_px * wf))), colours[slot])
        )
    torso = np.array([pts[5], pts[6], pts[12], pts[11]])
    parts.append((float(depth[[5, 6, 11, 12]].mean()), "torso", torso, max(1, int(round(limb_px * 2.0))), colours[0]))
    head_c = (pts[3] + pts[4]) / 2
    parts.append((float(depth[0]), "head", (head_c, (pts[5] + pts[6]) / 2), ident.head * scale, colours[2]))
    # size: line width in pixels, or the head radius
    for _, kind, geo, size, colour in sorted(parts, key=lambda p: p[0]):
        if kind == "line":
            cv2.line(img, _pt(geo[0]), _pt(geo[1]), colour, size, cv2.LINE_AA, _SHIFT)
        elif kind == "torso":
            poly = np.array([_pt(p) for p in geo], dtype=np.int32)
            cv2.fillConvexPoly(img, poly, colour, cv2.LINE_AA, _SHIFT)
            top, bottom = (geo[0] + geo[1]) / 2, (geo[2] + geo[3]) / 2  # body depth seen from the side
            cv2.line(img, _pt(top), _pt(bottom), colour, size, cv2.LINE_AA, _SHIFT)
            for f in stripes:
                left, right = geo[0] + f * (geo[3] - geo[0]), geo[1] + f * (geo[2] - geo[1])
                cv2.line(img, _pt(left), _pt(right), stripe_colour, 1, cv2.LINE_AA, _SHIFT)
        else:
            centre, neck = geo
            cv2.line(img, _pt(centre), _pt(neck), colour, max(1, int(round(limb_px * 0.8))), cv2.LINE_AA, _SHIFT)
            cv2.circle(img, _pt(centre), max(_ONE, int(round(size * _ONE))), colour, -1, cv2.LINE_AA, _SHIFT)


def smooth_texture(
    rng: np.random.Generator, shape: tuple[int, int], cells: tuple[int, int], channels: int
) -> np.ndarray:
    """Smooth random float32 texture in [0, 1] of ``shape`` (H, W) from a ``cells`` grid."""
    low = rng.random((cells[0], cells[1], channels), dtype=np.float32)
    tex = cv2.resize(low, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)
    return np.clip(tex.reshape(shape[0], shape[1], channels), 0.0, 1.0)


def camera_background(rng: np.random.Generator, height: int, width: int, infrared: bool) -> np.ndarray:
    """A wide float32 [H, 3W, C] background of one camera: blobs, a floor, vertical structures, grain.

    Visible scenes are muted colours around a camera tint; infrared night scenes are dark
    and cool, with a few warm objects.
    """
    shape = (height, 3 * width)
    shade = smooth_texture(rng, shape, (6, 18), 1)
    if infrared:
        bg = 0.1 + 0.25 * shade
    else:
        tint = rng.uniform(0.3, 0.7, 3)
        bg = tint * (0.6 + 0.6 * shade) + 0.12 * (smooth_texture(rng, shape, (4, 12), 3) - 0.5)
    floor = int(height * rng.uniform(0.75, 0.9))
    bg[floor:] = bg[floor:] * rng.uniform(0.5, 0.9) + rng.uniform(0.0, 0.15)
    for _ in range(int(rng.integers(2, 6))):  # poles, door frames
        x = int(rng.integers(0, shape[1]))
        w = int(rng.integers(1, max(2, width // 8)))
        bg[:floor, x : x + w] = rng.uniform(0.1, 0.4, 1) if infrared else rng.uniform(0.15, 0.85, 3)
    if infrared:
        for _ in range(int(rng.integers(0, 3))):  # warm objects (lamps, engines)
            c = (int(rng.integers(0, shape[1])), int(rng.integers(0, height)))
            cv2.circle(bg, c, int(rng.integers(2, max(3, width // 6))), float(rng.uniform(0.5, 0.8)), -1)
    bg += 0.06 * (rng.random(bg.shape, dtype=np.float32) - 0.5)
    return np.clip(bg * 255.0, 0, 255).astype(np.float32)


# Yaw ranges (degrees) by camera: side, oblique, near-frontal views.
_CAMERA_YAW = ((60.0, 110.0), (25.0, 60.0), (0.0, 25.0))
_SKIN = ((90, 120, 170), (110, 150, 200), (70, 90, 120), (140, 180, 225), (60, 75, 100))  # BGR


def _sample_view(rng: np.random.Generator, ident: Identity, camera: int, height: int, width: int) -> View:
    lo, hi = _CAMERA_YAW[camera % len(_CAMERA_YAW)]
    yaw = math.radians(rng.uniform(lo, hi))
    if rng.random() < 0.5:  # seen from behind
        yaw = math.pi - yaw
    yaw *= 1 if rng.random() < 0.5 else -1  # walking left or right
    fig_h = height * rng.uniform(0.78, 0.92)
    return View(
        yaw=yaw,
        scale=fig_h / ident.stature,
        cx=width * (0.5 + rng.uniform(-0.06, 0.06)),
        baseline=height * (0.5 + rng.uniform(-0.03, 0.03)) + fig_h / 2,
        phase=rng.uniform(0, 2 * math.pi),
        speed=rng.uniform(0.93, 1.07),
    )


def _clothing(rng: np.random.Generator, palette: np.ndarray, infrared: bool) -> tuple[list, object]:
    """Colours of the 4 slots and the stripe colour for one tracklet.

    Visible: clothing from the identity group's palette (or random), so colour narrows
    down a group at best. Infrared: warm skin, clothing cooler by an amount unrelated
    to its colour.
    """
    # one grey level per slot in infrared, a BGR triple in visible light
    upper: float | tuple[float, ...]
    lower: float | tuple[float, ...]
    skin: float | tuple[float, ...]
    slots: list[float | tuple[float, ...]]
    if infrared:
        skin = rng.uniform(185, 245)
        upper, lower = skin - rng.uniform(15, 85), skin - rng.uniform(15, 85)
        slots = [upper, lower, skin, upper if rng.random() < 0.5 else skin]
        return slots, upper - rng.uniform(10, 40)

    def pick(options: np.ndarray) -> tuple[float, ...]:
        base = options[rng.integers(len(options))] if rng.random() < 0.7 else rng.uniform(20, 235, 3)
        return tuple(float(c) for c in np.clip(base + rng.uniform(-15, 15, 3), 0, 255))

    upper, lower = pick(palette[0]), pick(palette[1])
    skin = tuple(float(c) + rng.uniform(-10, 10) for c in _SKIN[rng.integers(len(_SKIN))])
    slots = [upper, lower, skin, upper if rng.random() < 0.5 else skin]
    return slots, tuple(0.6 * c for c in upper)


def _occluders(rng: np.random.Generator, height: int, width: int, n: int) -> np.ndarray | None:
    """[n, 4] boxes (x0, y0, x1, y1) per frame (a pole sliding across the crop as the person
    walks past, or something low in front of the legs), or None for most tracklets."""
    r = rng.random()
    if r < 0.15:
        w = width * rng.uniform(0.1, 0.25)
        x = np.linspace(rng.uniform(-w, width), rng.uniform(-w, width), n)
        return np.stack([x, np.zeros(n), x + w, np.full(n, float(height))], axis=1)
    if r < 0.3:
        return np.tile([0.0, height * rng.uniform(0.65, 0.85), float(width), float(height)], (n, 1))
    return None


def render_tracklet(
    ident: Identity,
    infrared: bool,
    camera: int,
    background: np.ndarray,
    palette: np.ndarray,
    n: int,
    height: int,
    width: int,
    rng: np.random.Generator,
) -> tuple[list[np.ndarray], np.ndarray]:
    """Render ``n`` frames (uint8 BGR [H, W, 3]) and their detector-like keypoints [n, 17, 3].

    Stored keypoints are the true joints with jitter, confidence noise, joint drop-outs,
    occluded joints at low confidence and whole missed frames (conf 0 everywhere),
    all somewhat worse in infrared.
    """
    view = _sample_view(rng, ident, camera, height, width)
    colours, stripe_colour = _clothing(rng, palette, infrared)
    stripes = tuple(sorted(rng.uniform(0.2, 0.9, int(rng.integers(2, 4))))) if rng.random() < 0.3 else ()
    occluders = _occluders(rng, height, width, n)
    occ_colour = float(rng.uniform(20, 200)) if infrared else tuple(float(c) for c in rng.uniform(20, 200, 3))
    gain = rng.uniform(0.75, 1.25)
    blur = rng.uniform(0.5, 1.4) if infrared else rng.uniform(0.0, 0.8)
    noise = rng.uniform(4, 10) if infrared else rng.uniform(2, 7)
    jitter, drop, miss = (0.012, 0.08, 0.04) if infrared else (0.006, 0.04, 0.02)
    conf_lo, conf_hi = (0.35, 0.9) if infrared else (0.55, 1.0)
    # The crop follows the walker, so the background slides against the walking direction.
    off0 = rng.uniform(0, width)
    drift = -math.sin(view.yaw) * rng.uniform(0.3, 1.0)
    frames, keypoints = [], np.zeros((n, NUM_COCO_KEYPOINTS, 3), dtype=np.float32)
    for t in range(n):
        off = int(round(min(max(off0 + drift * t, 0), background.shape[1] - width)))
        img: np.ndarray = background[:, off : off + width] * gain
        img = np.ascontiguousarray(img[..., 0] if infrared else img)
        phase = view.phase + 2 * math.pi * ident.cadence * view.speed * t
        pts, depth = project(pose3d(ident, phase), view)
        draw_figure(img, pts, depth, ident, view.scale, colours, stripes, stripe_colour)
        visible_conf = np.ones(NUM_COCO_KEYPOINTS)
        if occluders is not None:
            x0, y0, x1, y1 = occluders[t]
            cv2.rectangle(img, (int(x0), int(y0)), (int(math.ceil(x1)) - 1, int(math.ceil(y1)) - 1), occ_colour, -1)
            hidden = (pts[:, 0] >= x0) & (pts[:, 0] < x1) & (pts[:, 1] >= y0) & (pts[:, 1] < y1)
            visible_conf[hidden] = 0.25
        if blur > 0.3:
            img = cv2.GaussianBlur(img, (0, 0), blur)
        img = img + rng.normal(0.0, noise, img.shape).astype(np.float32)
        img = np.clip(img, 0, 255).astype(np.uint8)
        frames.append(cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if infrared else img)

        kp = keypoints[t]
        sigma = jitter * np.where(visible_conf < 1, 3.0, 1.0)  # occluded joints are located worse
        kp[:, 0] = pts[:, 0] / width + rng.normal(0.0, sigma)
        kp[:, 1] = pts[:, 1] / height + rng.normal(0.0, sigma)
        kp[:, 2] = rng.uniform(conf_lo, conf_hi, NUM_COCO_KEYPOINTS) * visible_conf
        lost = (
            (rng.random(NUM_COCO_KEYPOINTS) < drop) | (kp[:, 0] < 0) | (kp[:, 0] > 1) | (kp[:, 1] < 0) | (kp[:, 1] > 1)
        )
        if rng.random() < miss:
            lost[:] = True
        kp[lost] = 0.0
    return frames, keypoints
