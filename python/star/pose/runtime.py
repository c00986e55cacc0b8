"""RTMPose and YOLOX on onnxruntime, with rtmlib 0.0.16's pre- and post-processing, batched.

:class:`RTMPoseModel` gives, for an image and a box, exactly what ``rtmlib.RTMPose``
gives (same affine warp of the box enlarged 1.25x to the model's aspect ratio, same
BGR mean/std normalisation, same SimCC arg-max decoding and score = mean of the x and
y maxima), but runs many crops per ``session.run`` when the model's batch axis allows.
:class:`YOLOXDetector` reproduces ``rtmlib.YOLOX``'s letterbox and both of its output
formats (models with NMS inside: ``dets`` [N, M, 5]; raw models: [N, anchors, 5 + classes]
decoded on the 8/16/32 stride grids) and returns the best person box.

This module needs only numpy, OpenCV and onnxruntime (no torch), so worker processes
start quickly.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from .errors import PoseError

# COCO-17: star_ext.NUM_COCO_KEYPOINTS, copied because star.pose must not import torch (its spawned
# workers start without it); tests/test_models.py ties the two.
NUM_COCO_KEYPOINTS = 17
RTMPOSE_MEAN = (123.675, 116.28, 103.53)  # BGR, as rtmlib
RTMPOSE_STD = (58.395, 57.12, 57.375)
BOX_PADDING = 1.25
SIMCC_SPLIT_RATIO = 2.0
DEFAULT_POSE_INPUT = (256, 192)  # (height, width), used when the ONNX input has symbolic spatial dims
DEFAULT_DET_INPUT = (640, 640)
YOLOX_PAD_VALUE = 114
YOLOX_NMS_SCORE_THR = 0.3  # rtmlib's threshold for models with NMS inside
YOLOX_RAW_SCORE_THR = 0.7  # rtmlib's default score_thr for raw models
YOLOX_STRIDES = (8, 16, 32)


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


CUDA_PROVIDER = "CUDAExecutionProvider"
DEVICES = "cpu, cuda, cuda:N or auto"


def _onnxruntime_errors() -> tuple[type[BaseException], ...]:
    """onnxruntime's own exception classes (pybind ones, not derived from a common base)."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    names = (
        "Fail",
        "InvalidArgument",
        "InvalidGraph",
        "InvalidProtobuf",
        "NoModel",
        "NoSuchFile",
        "NotImplemented",
        "RuntimeException",
    )
    return tuple(getattr(state, n) for n in names if hasattr(state, n))


def execution_providers(device: str) -> list:
    """onnxruntime providers for ``device``; "cuda" without the CUDA provider is an error, "auto" falls back to CPU."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device == "auto":
        device = "cuda" if CUDA_PROVIDER in available else "cpu"
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "cuda" or device.startswith("cuda:") and device[5:].isdigit():
        if CUDA_PROVIDER not in available:
            raise PoseError(
                f"--device {device}: this onnxruntime ({ort.__version__}) has no CUDA execution provider "
                f"(it has {', '.join(available)}); install the GPU build in its place: "
                "`pip uninstall -y onnxruntime && pip install 'star-reid[pose-gpu]'` "
                "(onnxruntime-gpu, with the CUDA and cuDNN libraries its release requires), "
                "or run with --device cpu (or auto: the GPU when there is one)"
            )
        return [(CUDA_PROVIDER, {"device_id": int(device[5:] or 0)}), "CPUExecutionProvider"]
    raise PoseError(f"--device must be one of {DEVICES}, got {device!r}")


def make_session(path: str | os.PathLike, device: str = "cpu", threads: int | None = None, what: str = "model"):
    """An onnxruntime session on ``device`` (see :func:`execution_providers`) with ``threads`` intra-op threads.

    A file onnxruntime cannot load is a :class:`PoseError` naming it; so is a CUDA device on
    which onnxruntime fell back to the CPU (it only warns: CUDA or cuDNN libraries missing),
    unless the device is "auto".
    """
    import onnxruntime as ort

    path = os.fspath(path)
    providers = execution_providers(device)
    opts = ort.SessionOptions()
    # Idle intra-op threads sleep instead of spinning: the decoding threads need those cores.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        raise PoseError(f"{what} {path} is empty (0 bytes): not an ONNX model")
    try:
        session = ort.InferenceSession(path, sess_options=opts, providers=providers)
    except _onnxruntime_errors() as e:
        reason = str(e).split(" failed:")[-1].strip()
        raise PoseError(f"{what} {path} is not a loadable ONNX model ({reason})") from None
    if device != "auto" and providers[0] != "CPUExecutionProvider" and session.get_providers()[0] != CUDA_PROVIDER:
        raise PoseError(
            f"--device {device}: onnxruntime could not start its CUDA execution provider for {path} "
            "(no GPU visible, or the CUDA / cuDNN libraries this onnxruntime-gpu needs are missing); "
            "run with --device cpu or auto"
        )
    return session


def _static_dim(d) -> int | None:
    return d if isinstance(d, int) and d > 0 else None


def _signature(args) -> str:
    return ", ".join(f"{a.name} {[d if isinstance(d, int) else '?' for d in a.shape]}" for a in args)


class _OnnxModel:
    """A session plus its input geometry: fixed batch size (None = dynamic) and spatial size.

    Subclasses say what they expect (``what``, ``expected``, :meth:`_outputs_problem`);
    a model that does not match is a :class:`PoseError` at load, naming the file.
    """

    what = "model"
    expected = ""

    def __init__(self, path, device: str, threads: int | None, default_hw: tuple[int, int]):
        self.path = os.fspath(path)
        self.session = make_session(path, device, threads, self.what)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        inp = inputs[0]
        problem = None
        if len(inputs) != 1 or len(inp.shape) != 4 or _static_dim(inp.shape[1]) not in (3, None):
            problem = "one image input N x 3 x H x W"
        elif inp.type != "tensor(float)":
            problem = f"a float32 input, not {inp.type}"
        else:
            h, w = _static_dim(inp.shape[2]), _static_dim(inp.shape[3])
            self.input_hw = (h, w) if h and w else default_hw
            problem = self._outputs_problem([[_static_dim(d) for d in o.shape] for o in outputs])
        if problem:
            raise PoseError(
                f"{self.what} {self.path} does not look like {self.expected}: expected {problem}; "
                f"it has inputs {_signature(inputs)} and outputs {_signature(outputs)}"
            )
        self.input_name = inp.name
        self.output_names = [o.name for o in outputs]
        self.batch_size = _static_dim(inp.shape[0])  # None: any batch size

    def _outputs_problem(self, shapes: list[list[int | None]]) -> str | None:
        """What is wrong with the output shapes (None: unknown dims), or None when they fit."""
        raise NotImplementedError

    def run(self, x: np.ndarray, max_batch: int | None = None) -> list[np.ndarray]:
        """Outputs for every row of ``x``: chunked to the model's batch size (zero-padded) or ``max_batch``."""
        n = x.shape[0]
        step = self.batch_size or max_batch or n
        if self.batch_size is None and step >= n:
            return self.session.run(self.output_names, {self.input_name: x})
        parts: list[list[np.ndarray]] = []
        for i in range(0, n, step):
            chunk = x[i : i + step]
            m = chunk.shape[0]
            if self.batch_size is not None and m < self.batch_size:
                pad = np.zeros((self.batch_size - m, *chunk.shape[1:]), chunk.dtype)
                chunk = np.concatenate([chunk, pad])
            parts.append([o[:m] for o in self.session.run(self.output_names, {self.input_name: chunk})])
        return [np.concatenate(outs) for outs in zip(*parts, strict=False)]


def box_center_scale(box: np.ndarray, padding: float = BOX_PADDING) -> tuple[np.ndarray, np.ndarray]:
    """Centre and (padded) size of an x1, y1, x2, y2 box, in the box's dtype (as rtmlib)."""
    box = np.asarray(box)
    return (box[0:2] + box[2:4]) * 0.5, (box[2:4] - box[0:2]) * padding


def fit_aspect(scale: np.ndarray, input_wh: tuple[int, int]) -> np.ndarray:
    """Grow the box size to the model's aspect ratio (rtmlib's rule; keeps the dtype)."""
    aspect = input_wh[0] / input_wh[1]
    w, h = scale[0:1], scale[1:2]
    return np.where(w > h * aspect, np.concatenate([w, w / aspect]), np.concatenate([h * aspect, h]))


def warp_matrix(center: np.ndarray, scale: np.ndarray, input_wh: tuple[int, int]) -> np.ndarray:
    """The 2 x 3 affine map of the box (centre, size) onto the model input (no rotation).

    Built like rtmlib/mmpose: three point pairs -- the centre, the point half a box width
    above it, and that offset turned by 90 degrees -- in float32, solved by OpenCV.
    """
    dst_w, dst_h = input_wh
    src = np.zeros((3, 2), np.float32)
    dst = np.zeros((3, 2), np.float32)
    src[0] = center
    src[1] = center + np.array([0.0, scale[0] * -0.5])
    d = src[0] - src[1]
    src[2] = src[1] + np.array([-d[1], d[0]])
    dst[0] = [dst_w * 0.5, dst_h * 0.5]
    dst[1] = np.array([dst_w * 0.5, dst_h * 0.5]) + np.array([0.0, dst_w * -0.5])
    d = dst[0] - dst[1]
    dst[2] = dst[1] + np.array([-d[1], d[0]])
    return cv2.getAffineTransform(src, dst)


class RTMPoseModel(_OnnxModel):
    """An RTMPose (SimCC) ONNX model with rtmlib's pre/post-processing, batched.

    ``input_hw`` is read from the model (fallback 256 x 192). Use :meth:`prepare` per crop
    (thread-safe, releases the GIL in OpenCV), :meth:`run` on the stacked inputs and
    :meth:`decode` on the outputs; or ``model(image, bboxes)`` like ``rtmlib.RTMPose``.
    """

    what = "pose model"
    expected = "an RTMPose (SimCC) model"

    def __init__(self, path, device: str = "cpu", threads: int | None = None):
        super().__init__(path, device, threads, DEFAULT_POSE_INPUT)
        self.input_wh = (self.input_hw[1], self.input_hw[0])
        # uint8 -> normalised float32, computed in float64 then rounded, exactly as rtmlib's
        # (img - mean) / std followed by the float32 cast.
        levels = np.arange(256, dtype=np.float64)
        self._luts = [
            ((levels - m) / s).astype(np.float32).reshape(1, 256)
            for m, s in zip(RTMPOSE_MEAN, RTMPOSE_STD, strict=False)
        ]

    def _outputs_problem(self, shapes):
        h, w = self.input_hw
        want = [
            [None, NUM_COCO_KEYPOINTS, int(SIMCC_SPLIT_RATIO * w)],
            [None, NUM_COCO_KEYPOINTS, int(SIMCC_SPLIT_RATIO * h)],
        ]
        fits = len(shapes) >= 2 and all(
            len(got) == 3 and all(g is None or e is None or g == e for g, e in zip(got, exp, strict=False))
            for got, exp in zip(shapes, want, strict=False)
        )
        return (
            None
            if fits
            else (
                f"outputs simcc_x [N, {NUM_COCO_KEYPOINTS}, {want[0][2]}] and "
                f"simcc_y [N, {NUM_COCO_KEYPOINTS}, {want[1][2]}] "
                f"for its {h} x {w} input (a detector goes to --det-model)"
            )
        )

    def prepare(self, image_bgr: np.ndarray, box, out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Warp ``box`` of the BGR image into ``out`` ([3, H, W] float32); return (centre, size) for decoding."""
        center, scale = box_center_scale(np.asarray(box))
        scale = fit_aspect(scale, self.input_wh)
        crop = cv2.warpAffine(
            image_bgr, warp_matrix(center, scale, self.input_wh), self.input_wh, flags=cv2.INTER_LINEAR
        )
        # Channel planes through the per-channel tables, written straight into the batch (no GIL held).
        for c, plane in enumerate(cv2.split(crop)):
            view = out[c]
            res = cv2.LUT(plane, self._luts[c], dst=view)
            if res.ctypes.data != view.ctypes.data:  # OpenCV reallocated: copy
                view[...] = res
        return center, scale

    def new_batch(self, n: int) -> np.ndarray:
        return np.empty((n, 3, *self.input_hw), np.float32)

    def decode(self, simcc_x: np.ndarray, simcc_y: np.ndarray, centers: np.ndarray, scales: np.ndarray):
        """SimCC arg-max decoding: keypoints [N, 17, 2] (float64, image pixels) and scores [N, 17] (float32)."""
        n, k, _ = simcc_x.shape
        sx = simcc_x.reshape(n * k, -1)
        sy = simcc_y.reshape(n * k, -1)
        locs = np.stack((sx.argmax(axis=1), sy.argmax(axis=1)), axis=-1).astype(np.float32)
        scores = 0.5 * (sx.max(axis=1) + sy.max(axis=1))
        locs[scores <= 0.0] = -1
        kpts = locs.reshape(n, k, 2) / SIMCC_SPLIT_RATIO
        centers = np.asarray(centers)[:, None, :]
        scales = np.asarray(scales)[:, None, :]
        kpts = kpts / np.array(self.input_wh) * scales
        kpts = kpts + centers - scales / 2
        return kpts, scores.reshape(n, k)

    def __call__(self, image_bgr: np.ndarray, bboxes=None, max_batch: int | None = None):
        """Keypoints [B, 17, 2] and scores [B, 17] of each box (default: the whole image), like rtmlib."""
        if bboxes is None or len(bboxes) == 0:
            bboxes = [[0, 0, image_bgr.shape[1], image_bgr.shape[0]]]
        x = self.new_batch(len(bboxes))
        cs = [self.prepare(image_bgr, b, x[i]) for i, b in enumerate(bboxes)]
        simcc_x, simcc_y = self.run(x, max_batch)[:2]
        return self.decode(simcc_x, simcc_y, np.stack([c for c, _ in cs]), np.stack([s for _, s in cs]))


def to_store(kpts: np.ndarray, scores: np.ndarray, width, height) -> np.ndarray:
    """rtmlib keypoints (pixels) and scores -> store rows [N, 17, 3]: x/W, y/H, conf.

    conf is the rtmlib score clipped to [0, 1]. A keypoint whose score is <= 0 or that
    lies outside the frame (x or y outside [0, 1]) is stored as (0, 0, 0): the store's
    "not detected / not visible in the frame" value (as the synthetic dataset does).
    """
    size = np.stack([np.asarray(width, np.float64), np.asarray(height, np.float64)], axis=-1).reshape(-1, 1, 2)
    xy = kpts / size
    conf = np.clip(scores.astype(np.float64), 0.0, 1.0)
    out = np.concatenate([xy, conf[..., None]], axis=-1)
    lost = (conf <= 0.0) | np.any((xy < 0.0) | (xy > 1.0), axis=-1)
    out[lost] = 0.0
    return out.astype(np.float32)


class YOLOXDetector(_OnnxModel):
    """A YOLOX ONNX model with rtmlib's letterbox and decoding; :meth:`best_box` picks the person.

    Models exported with NMS (rtmlib's onnx_sdk ones: first output ``dets`` [N, M, 5]) keep
    boxes with score > 0.3; raw models ([N, anchors, 5 + classes]) are decoded on the
    8/16/32 grids and kept when objectness x person score > ``score_thr`` (0.7), class 0
    being the person. Of the kept boxes the one with the highest score is the person of a
    re-ID crop (the one rtmlib's NMS ranks first); none kept = no person.
    """

    what = "detector model"
    expected = "a YOLOX detector"

    def __init__(self, path, device: str = "cpu", threads: int | None = None, score_thr: float = YOLOX_RAW_SCORE_THR):
        super().__init__(path, device, threads, DEFAULT_DET_INPUT)
        self.score_thr = score_thr
        self._grid: tuple[np.ndarray, np.ndarray] | None = None

    def _outputs_problem(self, shapes):
        h, w = self.input_hw
        cells = sum((h // s) * (w // s) for s in YOLOX_STRIDES)
        first = shapes[0] if shapes else []
        nms = len(first) == 3 and first[2] == 5
        raw = len(first) == 3 and (first[2] is None or first[2] >= 6) and first[1] in (cells, None)
        return (
            None
            if nms or raw
            else (
                f"a first output dets [N, boxes, 5] (NMS inside) or raw predictions [N, {cells}, 5 + classes] "
                f"(the 8/16/32 grids of its {h} x {w} input)"
            )
        )

    def prepare(self, image_bgr: np.ndarray, out: np.ndarray) -> float:
        """Letterbox the BGR image into ``out`` ([H, W, 3] uint8, padded with 114); return the scale ratio."""
        h, w = self.input_hw
        if image_bgr.shape[:2] == (h, w):
            out[...] = image_bgr
            return 1.0
        ratio = min(h / image_bgr.shape[0], w / image_bgr.shape[1])
        nw, nh = int(image_bgr.shape[1] * ratio), int(image_bgr.shape[0] * ratio)
        out[...] = YOLOX_PAD_VALUE
        out[:nh, :nw] = cv2.resize(image_bgr, (nw, nh), interpolation=cv2.INTER_LINEAR)
        return ratio

    def new_batch(self, n: int) -> np.ndarray:
        return np.empty((n, *self.input_hw, 3), np.uint8)

    def infer(self, letterboxed: np.ndarray, max_batch: int | None = None) -> np.ndarray:
        """First model output for [N, H, W, 3] uint8 letterboxed images."""
        x = np.ascontiguousarray(letterboxed.transpose(0, 3, 1, 2), dtype=np.float32)
        return self.run(x, max_batch)[0]

    def _grids(self, anchors: int) -> tuple[np.ndarray, np.ndarray]:
        if self._grid is None or self._grid[0].shape[0] != anchors:
            cells, strides = [], []
            for s in YOLOX_STRIDES:
                gh, gw = self.input_hw[0] // s, self.input_hw[1] // s
                xs, ys = np.meshgrid(np.arange(gw), np.arange(gh))
                cells.append(np.stack([xs, ys], -1).reshape(-1, 2))
                strides.append(np.full((gh * gw, 1), s))
            grid, stride = np.concatenate(cells), np.concatenate(strides)
            if grid.shape[0] != anchors:
                raise PoseError(
                    f"detector model {self.path}: {anchors} anchors do not match the 8/16/32 grids of {self.input_hw}"
                )
            self._grid = (grid, stride)
        return self._grid

    def boxes(self, output: np.ndarray, ratio: float) -> tuple[np.ndarray, np.ndarray]:
        """Candidate person boxes (x1, y1, x2, y2 in image pixels) and their scores, for one image's output [M, C]."""
        ratio = float(ratio)  # a weak Python scalar: float32 boxes stay float32, as in rtmlib
        if output.shape[-1] == 5:  # NMS inside the model
            boxes = output[:, :4] / ratio
            scores = output[:, 4]
            keep = scores > YOLOX_NMS_SCORE_THR
            return boxes[keep], scores[keep]
        if output.shape[-1] < 6:
            raise PoseError(f"detector model {self.path}: unexpected YOLOX output width {output.shape[-1]}")
        grid, stride = self._grids(output.shape[0])
        pred = output.astype(np.float32, copy=True)
        pred[:, :2] = (pred[:, :2] + grid) * stride
        pred[:, 2:4] = np.exp(pred[:, 2:4]) * stride
        scores = pred[:, 4] * pred[:, 5]  # objectness x person (class 0)
        xyxy = np.empty((pred.shape[0], 4), np.float32)
        xyxy[:, 0] = pred[:, 0] - pred[:, 2] / 2.0
        xyxy[:, 1] = pred[:, 1] - pred[:, 3] / 2.0
        xyxy[:, 2] = pred[:, 0] + pred[:, 2] / 2.0
        xyxy[:, 3] = pred[:, 1] + pred[:, 3] / 2.0
        xyxy /= ratio
        keep = scores > self.score_thr
        # rtmlib's NMS stacks kept boxes with float64 columns: its boxes come back as float64.
        return xyxy[keep].astype(np.float64), scores[keep]

    def best_box(self, output: np.ndarray, ratio: float) -> np.ndarray | None:
        """The highest-scoring person box of one image, or None (no person, or a degenerate box)."""
        boxes, scores = self.boxes(output, ratio)
        if len(scores) == 0:
            return None
        box = boxes[int(np.argmax(scores))]
        if not (box[2] > box[0] and box[3] > box[1] and np.all(np.isfinite(box))):
            return None
        return box

    def __call__(self, image_bgr: np.ndarray) -> np.ndarray | None:
        x = self.new_batch(1)
        ratio = self.prepare(image_bgr, x[0])
        return self.best_box(self.infer(x)[0], ratio)
