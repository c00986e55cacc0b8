"""Embedding tracklets with a trained model: from a checkpoint (PyTorch) or from an exported ``.onnx``.

::

    from star.export import Embedder
    embedder = Embedder.from_checkpoint("runs/demo/best.pt")
    emb = embedder.embed(frames, keypoints, "ir")   # [B, T, 3, H, W] uint8, [B, T, 17, 3] -> [B, C]

Both embedders take the inputs described in ``star.export.inputs`` and return
L2-normalised float32 embeddings on the CPU, compared by cosine similarity
(``emb_q @ emb_g.T``), as the evaluation does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from ..engine.checkpoint import CheckpointError
from .inputs import NetworkInputs, prepare_inputs

# Keys of the metadata stored in an exported .onnx (``metadata_props``).
META_SEQ_LEN, META_HEIGHT, META_WIDTH, META_INFO = "star.seq_len", "star.height", "star.width", "star.info"


class Embedder:
    """A STAR network in eval mode plus the frame size and sequence length it was trained with."""

    def __init__(self, model: nn.Module, *, seq_len: int, height: int, width: int, batch_size: int = 32):
        self.model, self.seq_len, self.height, self.width = model.eval(), seq_len, height, width
        self.batch_size = batch_size
        self.device = next(model.parameters()).device

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, device: str | torch.device = "auto", **kwargs: Any) -> Embedder:
        """The network of a ``best.pt`` / ``last.pt`` with its weights; ``CheckpointError`` naming the file
        when it is not a star checkpoint, lacks weights or records a model this version cannot build."""
        from ..engine.inference import load_trained_model, run_config_from_checkpoint

        data = run_config_from_checkpoint(checkpoint).get("data") or {}
        try:
            height, width = int(data["height"]), int(data["width"])
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{checkpoint} does not record the frame size (data.height, data.width)") from None
        trained = load_trained_model(checkpoint, device)  # CheckpointError for a config it cannot build
        return cls(trained.model, seq_len=trained.model.cfg.seq_len, height=height, width=width, **kwargs)

    def prepare(self, frames: Any, keypoints: Any, modality: Any) -> NetworkInputs:
        """The checked, normalised network inputs of a batch (see ``star.export.inputs``)."""
        return prepare_inputs(frames, keypoints, modality, seq_len=self.seq_len, height=self.height, width=self.width)

    @torch.inference_mode()
    def embed(self, frames: Any, keypoints: Any, modality: Any) -> torch.Tensor:
        """L2-normalised embeddings [B, C] (float32, CPU), computed ``batch_size`` tracklets at a time."""
        inputs = self.prepare(frames, keypoints, modality)
        out = []
        for start in range(0, len(inputs.frames), self.batch_size):
            chunk = [t[start : start + self.batch_size].to(self.device) for t in inputs]
            out.append(self.model(*chunk).float().cpu())
        return torch.cat(out) if out else torch.empty(0, cast(int, self.model.feature_dim))  # an empty batch is (0, C)


class OnnxEmbedder:
    """An ``.onnx`` written by ``star export``, run by onnxruntime (no star_ext, no torch model needed)."""

    def __init__(self, path: str | Path, providers: tuple[str, ...] = ("CPUExecutionProvider",)):
        from .errors import ExportError

        try:
            import onnxruntime
        except ImportError:
            raise ExportError("running an exported model needs onnxruntime: pip install 'star-reid[export]'") from None
        self.path = Path(path)
        if not self.path.is_file():
            raise ExportError(f"ONNX model not found: {self.path}")
        try:
            self.session = onnxruntime.InferenceSession(str(self.path), providers=list(providers))
        except Exception as exc:  # onnxruntime raises its own classes, with long messages
            raise ExportError(f"{self.path} is not a loadable ONNX model ({type(exc).__name__})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        try:
            self.seq_len, self.height, self.width = (int(meta[k]) for k in (META_SEQ_LEN, META_HEIGHT, META_WIDTH))
        except (KeyError, ValueError):
            raise ExportError(
                f"{self.path} was not written by `star export` (no {META_SEQ_LEN}/{META_HEIGHT}/{META_WIDTH} metadata)"
            ) from None
        self.info = json.loads(meta.get(META_INFO, "{}"))
        first = self.session.get_inputs()[0].shape[0]
        self.batch = first if isinstance(first, int) else None  # None: dynamic batch axis

    def embed(self, frames: Any, keypoints: Any, modality: Any) -> torch.Tensor:
        """L2-normalised embeddings [B, C] (float32), as :meth:`Embedder.embed`. A model exported with a
        fixed batch runs chunks of that size (the last one padded with copies of its first tracklet)."""
        inputs = prepare_inputs(frames, keypoints, modality, seq_len=self.seq_len, height=self.height, width=self.width)
        total = len(inputs.frames)
        step = self.batch or max(total, 1)
        out = []
        for start in range(0, total, step):
            chunk = [t[start : start + step] for t in inputs]
            pad = step - len(chunk[0]) if self.batch else 0
            chunk = [torch.cat([t, t[:1].expand(pad, *t.shape[1:])]) for t in chunk]
            feeds = {
                name: np.ascontiguousarray(t.numpy()) for name, t in zip(NetworkInputs._fields, chunk, strict=False)
            }
            out.append(torch.from_numpy(self.session.run(None, feeds)[0][: step - pad]))
        # an empty batch is (0, C): C as export recorded it (the exporter may leave the axis symbolic),
        # else the output's static second axis
        width = self.info.get("embedding_dim", self.session.get_outputs()[0].shape[1])
        return torch.cat(out) if out else torch.empty(0, int(width))
