"""Tiny ONNX models with the signatures of RTMPose and YOLOX, for tests, benchmarks and dry runs.

They are not trained: their outputs are simple deterministic functions of the input
image, so results can be predicted and compared with rtmlib. Building them needs the
``onnx`` package (``pip install star-reid[test]``); nothing is downloaded.

- :func:`make_tiny_rtmpose`: input ``input`` [N, 3, 256, 192] (batch axis dynamic or fixed)
  -> ``simcc_x`` [N, 17, 384], ``simcc_y`` [N, 17, 512] (split ratio 2). Keypoint k looks
  at a mix of the colour channels (weights ``channel_weights()[k]``); its x is the input
  column with the largest mean, its y the row with the largest mean (peak at the pixel
  centre: bin 2c + 1), its SimCC values are the sigmoid of those means, so a white cross
  on black gives every keypoint at the cross with score ~0.9.
- :func:`make_tiny_yolox`: input [N, 3, H, W] (letterboxed, unnormalised BGR). With
  ``nms=True`` (rtmlib's onnx_sdk format) outputs ``dets`` [N, 2, 5] and ``labels`` [N, 2]:
  row 1 is the bounding box of the pixels brighter than 200 (any channel) with score
  clip((max - 150) / 105, 0, 1), row 0 the same box grown by 8 px with half the score (a
  lower-scoring box listed first). With ``nms=False`` it outputs raw predictions
  [N, anchors, 7] (box, objectness, 2 classes) on the 8/16/32 grids: two overlapping
  person boxes and one class-1 box, with objectness = the image mean / 255.
"""

from __future__ import annotations

import os

import numpy as np

K = 17


def channel_weights() -> np.ndarray:
    """[17, 3] colour-channel weights (BGR) of the tiny RTMPose's keypoints."""
    w = np.full((K, 3), 0.05, np.float32)
    for k in range(K):
        w[k, k % 3] = 1.0 + 0.1 * k
    return w


def _upsample_matrix(n: int) -> np.ndarray:
    """[n, 2n]: bin 2c + 1 gets value c, bin 2c half of it (the peak sits on the pixel centre)."""
    u = np.zeros((n, 2 * n), np.float32)
    u[np.arange(n), 2 * np.arange(n) + 1] = 1.0
    u[np.arange(n), 2 * np.arange(n)] = 0.5
    return u


def _save(model, path) -> str:
    import onnx

    onnx.checker.check_model(model)
    path = os.fspath(path)
    onnx.save(model, path)
    return path


def make_tiny_rtmpose(path, batch: int | None = None, input_hw: tuple[int, int] = (256, 192)) -> str:
    """Write the tiny RTMPose-like model to ``path`` (``batch=None``: dynamic batch axis)."""
    from onnx import TensorProto, helper, numpy_helper

    h, w = input_hw
    n = batch if batch is not None else "batch"
    inits = [
        numpy_helper.from_array(channel_weights(), "mix"),
        numpy_helper.from_array(_upsample_matrix(w), "up_x"),
        numpy_helper.from_array(_upsample_matrix(h), "up_y"),
    ]
    nodes = [
        helper.make_node("ReduceMean", ["input"], ["col"], axes=[2], keepdims=0),  # [N, 3, W]
        helper.make_node("ReduceMean", ["input"], ["row"], axes=[3], keepdims=0),  # [N, 3, H]
        helper.make_node("MatMul", ["mix", "col"], ["kx"]),  # [N, 17, W]
        helper.make_node("MatMul", ["mix", "row"], ["ky"]),  # [N, 17, H]
        helper.make_node("Sigmoid", ["kx"], ["sx"]),
        helper.make_node("Sigmoid", ["ky"], ["sy"]),
        helper.make_node("MatMul", ["sx", "up_x"], ["simcc_x"]),
        helper.make_node("MatMul", ["sy", "up_y"], ["simcc_y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_rtmpose",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [n, 3, h, w])],
        [
            helper.make_tensor_value_info("simcc_x", TensorProto.FLOAT, [n, K, 2 * w]),
            helper.make_tensor_value_info("simcc_y", TensorProto.FLOAT, [n, K, 2 * h]),
        ],
        inits,
    )
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)


def _box_edges(mask: str, size: int, axis_name: str, nodes: list) -> tuple[str, str]:
    """Nodes giving the first bright index and one past the last one of a [N, size] 0/1 mask."""
    from onnx import helper

    first, rev, last_rev, last = (f"{axis_name}_{s}" for s in ("first", "rev", "last_rev", "last"))
    nodes += [
        helper.make_node("ArgMax", [mask], [first + "_i"], axis=1, keepdims=1),
        helper.make_node("Cast", [first + "_i"], [first], to=1),
        helper.make_node("Slice", [mask, "rev_start", "rev_end", "axis1", "step_back"], [rev]),
        helper.make_node("ArgMax", [rev], [last_rev + "_i"], axis=1, keepdims=1),
        helper.make_node("Cast", [last_rev + "_i"], [last_rev], to=1),
        helper.make_node("Sub", [f"size_{axis_name}", last_rev], [last]),
    ]
    return first, last


def make_tiny_yolox(path, nms: bool = True, batch: int | None = 1, input_hw: tuple[int, int] = (640, 640)) -> str:
    """Write the tiny YOLOX-like model to ``path`` (rtmlib's onnx_sdk models have batch 1 and NMS inside)."""
    from onnx import TensorProto, helper, numpy_helper

    h, w = input_hw
    n = batch if batch is not None else "batch"
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, [n, 3, h, w])
    if not nms:
        return _save(_raw_yolox(inp, n, h, w), path)
    c = lambda name, value, dtype=np.float32: numpy_helper.from_array(np.asarray(value, dtype), name)  # noqa: E731
    inits = [
        c("bright", 200.0),
        c("offset", 150.0),
        c("span", 105.0),
        c("zero", 0.0),
        c("one", 1.0),
        c("size_x", float(w)),
        c("size_y", float(h)),
        c("rev_start", [-1], np.int64),
        c("rev_end", [-(2**62)], np.int64),
        c("axis1", [1], np.int64),
        c("step_back", [-1], np.int64),
        c("grow", [-8.0, -8.0, 8.0, 8.0, 0.0]),
        c("halve", [1.0, 1.0, 1.0, 1.0, 0.5]),
        c("no_label", 0.0),
    ]
    nodes = [
        helper.make_node("ReduceMax", ["input"], ["cmax"], axes=[1], keepdims=0),  # [N, H, W]
        helper.make_node("ReduceMax", ["cmax"], ["colmax"], axes=[1], keepdims=0),  # [N, W]
        helper.make_node("ReduceMax", ["cmax"], ["rowmax"], axes=[2], keepdims=0),  # [N, H]
        helper.make_node("Greater", ["colmax", "bright"], ["colb"]),
        helper.make_node("Cast", ["colb"], ["colmask"], to=1),
        helper.make_node("Greater", ["rowmax", "bright"], ["rowb"]),
        helper.make_node("Cast", ["rowb"], ["rowmask"], to=1),
    ]
    x1, x2 = _box_edges("colmask", w, "x", nodes)
    y1, y2 = _box_edges("rowmask", h, "y", nodes)
    nodes += [
        helper.make_node("ReduceMax", ["colmax"], ["allmax"], axes=[1], keepdims=1),  # [N, 1]
        helper.make_node("Sub", ["allmax", "offset"], ["s0"]),
        helper.make_node("Div", ["s0", "span"], ["s1"]),
        helper.make_node("Clip", ["s1", "zero", "one"], ["score"]),
        helper.make_node("Concat", [x1, y1, x2, y2, "score"], ["box"], axis=1),  # [N, 5]
        helper.make_node("Mul", ["box", "halve"], ["box_h"]),
        helper.make_node("Add", ["box_h", "grow"], ["box_lo"]),
        helper.make_node("Unsqueeze", ["box_lo", "axis1"], ["d0"]),
        helper.make_node("Unsqueeze", ["box", "axis1"], ["d1"]),
        helper.make_node("Concat", ["d0", "d1"], ["dets"], axis=1),  # [N, 2, 5]
        helper.make_node("Gather", ["dets", "score_col"], ["det_scores"], axis=2),  # [N, 2]
        helper.make_node("Mul", ["det_scores", "no_label"], ["labels_f"]),
        helper.make_node("Cast", ["labels_f"], ["labels"], to=TensorProto.INT64),
    ]
    inits.append(numpy_helper.from_array(np.asarray(4, np.int64), "score_col"))
    graph = helper.make_graph(
        nodes,
        "tiny_yolox_nms",
        [inp],
        [
            helper.make_tensor_value_info("dets", TensorProto.FLOAT, [n, 2, 5]),
            helper.make_tensor_value_info("labels", TensorProto.INT64, [n, 2]),
        ],
        inits,
    )
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)


def _raw_yolox(inp, n, h: int, w: int):
    from onnx import TensorProto, helper, numpy_helper

    cells = sum((h // s) * (w // s) for s in (8, 16, 32))
    base = np.zeros((1, cells, 7), np.float32)
    gain = np.zeros((1, cells, 7), np.float32)
    s32 = cells - (h // 32) * (w // 32)  # first cell of the stride-32 grid
    gw = w // 32
    for (gx, gy), obj, cls in (((5, 6), 1.0, 0), ((6, 6), 0.9, 0), ((12, 10), 1.0, 1)):
        j = s32 + gy * gw + gx
        base[0, j, :4] = (0.5, 0.5, np.log(4.0), np.log(8.0))  # 128 x 256 px box centred in the cell
        base[0, j, 5 + cls] = 1.0
        gain[0, j, 4] = obj / 255.0  # objectness = obj * mean intensity / 255
    nodes = [
        helper.make_node("ReduceMean", ["input"], ["m"], axes=[1, 2, 3], keepdims=1),  # [N, 1, 1, 1]
        helper.make_node("Reshape", ["m", "shape3"], ["m3"]),  # [N, 1, 1]
        helper.make_node("Mul", ["m3", "gain"], ["g"]),
        helper.make_node("Add", ["g", "base"], ["output"]),
    ]
    inits = [
        numpy_helper.from_array(base, "base"),
        numpy_helper.from_array(gain, "gain"),
        numpy_helper.from_array(np.array([-1, 1, 1], np.int64), "shape3"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_yolox_raw",
        [inp],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [n, cells, 7])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
