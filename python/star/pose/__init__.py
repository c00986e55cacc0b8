"""star.pose: COCO-17 keypoints for re-ID frames with RTMPose (rtmlib's processing, onnxruntime), docs/pose.md.

Typical use (the ``star pose`` command does the same)::

    from star.data import load_dataset
    from star.pose import PoseOptions, extract_keypoints

    data = load_dataset("hitsz-vcm", root)
    run = extract_keypoints(data, PoseOptions(out=f"{root}/keypoints", model="rtmpose-m", batch=32, workers=2))
    print(run.summary())

- Re-ID frames are person crops: by default the box is the whole frame; ``detector="yolox"``
  runs YOLOX first and keeps its best person box (none: conf 0 for the frame).
- Per frame and box the keypoints and scores equal ``rtmlib.RTMPose``'s
  (:class:`RTMPoseModel`); the store holds x / W, y / H and the score clipped to [0, 1].
- Batched inference (when the ONNX batch axis allows), decoding in threads overlapped with
  inference, several worker processes, shards written atomically: an interrupted run
  resumes; ``shard="I/N"`` + :func:`merge_shards` split the work across machines.
- Weights: a local ``.onnx`` or rtmlib's cache (:func:`resolve_model`); never downloaded.

Only numpy, OpenCV, onnxruntime and tqdm are needed (``pip install star-reid[pose]``, or
``[pose-gpu]`` -- onnxruntime-gpu, in place of onnxruntime -- for ``device="cuda"``); rtmlib
is not imported. :mod:`star.pose.testing` builds tiny stand-in models with ``onnx``,
:mod:`star.pose.standins` compute-realistic ones with torch (benchmarks);
:mod:`star.data.keypoint_quality` summarises a store's pose quality per split and modality.
"""

from .errors import ModelNotFoundError, PoseError, PoseSettingsError, UnreadableFrameError
from .extract import PoseRun, PoseWarning, extract_keypoints
from .frames import DEFAULT_BATCH, FrameExtractor, PoseSettings
from .merge import merge_shards
from .options import DEFAULT_SHARD_SIZE, PoseOptions
from .runtime import RTMPoseModel, YOLOXDetector, to_store
from .shards import Shard, parse_shard_spec, plan_shards, select_part
from .weights import DEFAULT_DET_MODEL, DEFAULT_POSE_MODEL, KNOWN_MODELS, resolve_model, rtmlib_cache_dir

__all__ = [
    "DEFAULT_BATCH",
    "DEFAULT_DET_MODEL",
    "DEFAULT_POSE_MODEL",
    "DEFAULT_SHARD_SIZE",
    "FrameExtractor",
    "KNOWN_MODELS",
    "ModelNotFoundError",
    "PoseError",
    "PoseOptions",
    "PoseRun",
    "PoseSettingsError",
    "PoseSettings",
    "PoseWarning",
    "RTMPoseModel",
    "Shard",
    "UnreadableFrameError",
    "YOLOXDetector",
    "extract_keypoints",
    "merge_shards",
    "parse_shard_spec",
    "plan_shards",
    "resolve_model",
    "rtmlib_cache_dir",
    "select_part",
    "to_store",
]
