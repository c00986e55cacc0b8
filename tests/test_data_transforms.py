"""Synchronised tracklet transforms: keypoints stay on the image content they mark."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from star.data import COCO17_KEYPOINTS, CropFlip, TrackletTransform, normalize_frames

L_SH, R_SH = COCO17_KEYPOINTS.index("left_shoulder"), COCO17_KEYPOINTS.index("right_shoulder")
RED, GREEN = (255, 0, 0), (0, 255, 0)


def _frame_with_dots(dots: dict[int, tuple[int, int, tuple]], h=96, w=48):
    """A black frame with 2x2 coloured dots; keypoint k sits at the centre of its dot."""
    img = np.zeros((h, w, 3), np.uint8)
    kp = np.zeros((17, 3), np.float32)
    for k, (row, col, colour) in dots.items():
        img[row : row + 2, col : col + 2] = colour
        kp[k] = ((col + 1) / w, (row + 1) / h, 0.9)  # centre of the 2x2 block, normalized
    return img, kp


def _colour_at(img: np.ndarray, kp: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    return img[int(kp[1] * h), int(kp[0] * w)]


def _bright_centroid(img: np.ndarray, channel: int) -> tuple[float, float]:
    ys, xs = np.nonzero(img[..., channel] > 128)
    return (xs.mean() + 0.5) / img.shape[1], (ys.mean() + 0.5) / img.shape[0]


@pytest.mark.parametrize(
    "params", [CropFlip(10, 10, False), CropFlip(0, 20, False), CropFlip(17, 3, True), CropFlip(20, 0, True)]
)
def test_keypoints_follow_the_image(params):
    tf = TrackletTransform(288, 144, train=True)
    frame1, kp1 = _frame_with_dots({L_SH: (30, 12, RED), R_SH: (31, 33, GREEN)})
    frame2, kp2 = _frame_with_dots({L_SH: (60, 20, RED), R_SH: (58, 30, GREEN)})
    frames = tf.apply_frames([frame1, frame2], params)
    kps = tf.apply_keypoints(np.stack([kp1, kp2]), params)
    assert frames.shape == (2, 288, 144, 3) and frames.dtype == np.uint8
    for img, kp, src in zip(frames, kps, (kp1, kp2), strict=False):
        # The person's left shoulder is the red dot before, and after a flip (labels swap with the mirror).
        red_xy = _bright_centroid(img, 0)
        green_xy = _bright_centroid(img, 1)
        np.testing.assert_allclose(kp[L_SH, :2], red_xy if not params.flip else green_xy, atol=1.5 / 144)
        np.testing.assert_allclose(kp[R_SH, :2], green_xy if not params.flip else red_xy, atol=1.5 / 144)
        expected_l = src[R_SH] if params.flip else src[L_SH]
        assert kp[L_SH, 2] == pytest.approx(expected_l[2])
        assert kp[0].tolist() == [0.0, 0.0, 0.0]  # undetected stays exactly zero


def test_flip_swaps_every_left_right_pair():
    tf = TrackletTransform(288, 144)
    kp = np.zeros((1, 17, 3), np.float32)
    kp[0, :, 0] = np.linspace(0.1, 0.9, 17)
    kp[0, :, 1] = 0.5
    kp[0, :, 2] = np.arange(1, 18) / 20
    out = tf.apply_keypoints(kp, CropFlip(10, 10, True))[0]
    for k, name in enumerate(COCO17_KEYPOINTS):
        mirror = name.replace("left", "tmp").replace("right", "left").replace("tmp", "right")
        j = COCO17_KEYPOINTS.index(mirror)
        assert out[k, 2] == pytest.approx(kp[0, j, 2])
        assert out[k, 0] == pytest.approx(1 - kp[0, j, 0])


def test_keypoints_cropped_out_get_zero_confidence():
    tf = TrackletTransform(288, 144)
    kp = np.zeros((1, 17, 3), np.float32)
    kp[0, 5] = (0.01, 0.5, 0.8)  # 1.4 px from the left edge
    kp[0, 6] = (0.5, 0.5, 0.8)
    out = tf.apply_keypoints(kp, CropFlip(dx=20, dy=10, flip=False))[0]  # shift left by 10 px
    assert out[5, 2] == 0.0 and out[5, 0] == pytest.approx(0.01 - 10 / 144)  # position kept, conf 0
    assert out[6, 2] == pytest.approx(0.8)


def test_parameters_are_shared_by_the_tracklet_and_random_across_tracklets():
    tf = TrackletTransform(288, 144, train=True)
    rng = np.random.default_rng(0)
    params = [tf.sample(rng) for _ in range(200)]
    assert {p.flip for p in params} == {True, False}
    assert len({(p.dx, p.dy) for p in params}) > 50
    assert all(0 <= p.dx <= 20 and 0 <= p.dy <= 20 for p in params)
    # One call = one parameter set: identical frames stay identical after the transform.
    frame, kp = _frame_with_dots({L_SH: (30, 12, RED)})
    for seed in range(5):
        frames, kps = tf([frame] * 4, np.stack([kp] * 4), np.random.default_rng(seed))
        assert all(np.array_equal(frames[0], f) for f in frames[1:])
        assert all(np.array_equal(kps[0], k) for k in kps[1:])


def test_test_mode_only_resizes():
    tf = TrackletTransform(288, 144, train=False)
    frame, kp = _frame_with_dots({L_SH: (30, 12, RED)})
    frames, kps = tf([frame], kp[None])
    np.testing.assert_array_equal(kps[0], kp)
    assert _bright_centroid(frames[0], 0) == pytest.approx(tuple(kp[L_SH, :2]), abs=1.0 / 144)


def test_normalize_frames():
    x = torch.full((2, 3, 4, 4), 255, dtype=torch.uint8)
    y = normalize_frames(x)
    assert y.dtype == torch.float32
    assert y[0, 0, 0, 0].item() == pytest.approx((1 - 0.485) / 0.229)


def test_pad_scales_with_the_frame_height():
    """Pad(10) is the recipe's value at 288-pixel frames; small frames get a proportional pad."""
    from star.data.transforms import default_pad

    assert TrackletTransform(288, 144).pad == 10
    assert TrackletTransform(96, 48).pad == default_pad(96) == 3
    assert TrackletTransform(32, 16).pad == 1
    assert TrackletTransform(96, 48, pad=10).pad == 10
    rng = np.random.default_rng(0)
    tf = TrackletTransform(96, 48, train=True)
    offsets = {(p.dx, p.dy) for p in (tf.sample(rng) for _ in range(200))}
    assert max(max(o) for o in offsets) <= 6
