"""Using a trained model outside the training code: an inference API and ONNX export (``star export``).

- :class:`Embedder` (``Embedder.from_checkpoint(path)``) embeds tracklets given as
  tensors or arrays (frames, keypoints, modality; see ``star.export.inputs``) with
  the PyTorch network and its fused ops.
- :func:`export_onnx` writes that network as an ONNX model of standard ops (no
  star_ext needed to run it) and checks it against PyTorch with onnxruntime.
- :class:`OnnxEmbedder` runs such a file with onnxruntime, same ``embed`` call.
"""

from .embedder import Embedder, OnnxEmbedder
from .errors import ExportError
from .inputs import InferenceInputError, NetworkInputs, prepare_inputs
from .onnx_export import DEFAULT_OPSET, PARITY_TOLERANCE, ExportReport, export_onnx

__all__ = [
    "Embedder",
    "OnnxEmbedder",
    "ExportError",
    "InferenceInputError",
    "NetworkInputs",
    "prepare_inputs",
    "export_onnx",
    "ExportReport",
    "DEFAULT_OPSET",
    "PARITY_TOLERANCE",
]
