"""``star export``: a checkpoint's eval network as an ONNX model of standard ops, checked against PyTorch.

The model's inputs are ``frames`` float32 [B, T, 3, H, W] (ImageNet-normalised RGB),
``keypoints`` float32 [B, T, 17, 3] and ``modality`` int64 [B] (0 = infrared,
1 = visible); its output ``embedding`` float32 [B, C] is L2-normalised. B is a
dynamic axis unless a fixed batch is asked for; T, H and W are the trained ones and
stored in the model's metadata (``star.seq_len``, ``star.height``, ``star.width``).

Exporter: torch's TorchScript-based ``torch.onnx.export(dynamo=False)``. The
torch.export-based one (``dynamo=True``, the default since torch 2.9) needs the
onnxscript package, which star-reid does not otherwise need.
"""

from __future__ import annotations

import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from ..data import NUM_COCO_KEYPOINTS
from ..fileio import atomic_write
from ..output_paths import check_output_file, prepare_output_file
from .embedder import META_HEIGHT, META_INFO, META_SEQ_LEN, META_WIDTH, Embedder
from .errors import ExportError
from .inputs import NetworkInputs
from .onnx_network import export_network

DEFAULT_OPSET = 17
MIN_OPSET = 14  # the frame correction's scaled_dot_product_attention exports from opset 14 on
MAX_OPSET = 20  # the last opset of torch's TorchScript-based exporter (torch 2.5 to 2.14)
PARITY_TOLERANCE = 1e-4  # max |onnxruntime - PyTorch| of an embedding entry (README, ONNX export)
OUTPUT_NAME = "embedding"


@dataclass
class ExportReport:
    """What ``export_onnx`` wrote and how closely onnxruntime reproduced PyTorch (None: onnxruntime missing)."""

    path: Path
    opset: int
    batch: int | None  # None = dynamic
    embedding_dim: int
    max_abs_diff: float | None

    def summary(self) -> str:
        batch = "dynamic batch" if self.batch is None else f"batch {self.batch}"
        parity = (
            "not checked (onnxruntime is not installed)"
            if self.max_abs_diff is None
            else f"onnxruntime vs PyTorch max |diff| {self.max_abs_diff:.2e} (tolerance {PARITY_TOLERANCE:g})"
        )
        size = self.path.stat().st_size / 2**20
        return f"wrote {self.path} ({size:.1f} MiB, opset {self.opset}, {batch}, {self.embedding_dim}-d); {parity}"


def parse_batch(value: str | int | None) -> int | None:
    """``"dynamic"`` / None -> None (dynamic axis); a positive integer -> that fixed batch size."""
    if value is None or value == "dynamic":
        return None
    try:
        batch = int(value)
    except (TypeError, ValueError):
        batch = 0
    if batch < 1:
        raise ExportError(f"--batch must be 'dynamic' or a positive integer, got {value!r}")
    return batch


def example_inputs(batch: int, seq_len: int, height: int, width: int, seed: int = 0) -> NetworkInputs:
    """A deterministic batch of plausible inputs, both modalities present (the export trace and the check)."""
    g = torch.Generator().manual_seed(seed)
    frames = torch.randn(batch, seq_len, 3, height, width, generator=g)
    keypoints = torch.rand(batch, seq_len, NUM_COCO_KEYPOINTS, 3, generator=g)
    keypoints[..., 2] = torch.where(keypoints[..., 2] < 0.15, 0.0, keypoints[..., 2])  # some undetected joints
    modality = torch.arange(batch, dtype=torch.int64) % 2
    return NetworkInputs(frames, keypoints, modality)


def _trace_to_onnx(network: torch.nn.Module, inputs: NetworkInputs, opset: int, dynamic: bool) -> bytes:
    names = list(NetworkInputs._fields)
    axes = {name: {0: "batch"} for name in (*names, OUTPUT_NAME)} if dynamic else None
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The shape checks of STAR.forward become constants of the trace (TracerWarning), the exporter is
        # "legacy" (DeprecationWarning), and it warns about LSTM batch sizes: none applies here, and the
        # parity check below runs other batch sizes.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            network,
            tuple(inputs),
            buffer,  # type: ignore[arg-type]  # the stubs say a path, but export also writes to a BytesIO
            dynamo=False,
            opset_version=opset,
            input_names=names,
            output_names=[OUTPUT_NAME],
            dynamic_axes=axes,
            do_constant_folding=True,
        )
    return buffer.getvalue()


def _with_metadata(model_bytes: bytes, metadata: dict[str, str]) -> bytes:
    import onnx

    model = onnx.load_from_string(model_bytes)
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _max_abs_diffs(model_bytes: bytes, embedder: Embedder, batches: list[NetworkInputs]) -> tuple[float | None, int]:
    """(max |onnxruntime - PyTorch with its fused ops| over ``batches`` or None without onnxruntime, embedding dim)."""
    try:
        import onnxruntime
    except ImportError:
        onnxruntime = None
    session = onnxruntime and onnxruntime.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    worst, dim = 0.0, 0
    for inputs in batches:
        with torch.inference_mode():
            want = embedder.model(*(t.to(embedder.device) for t in inputs)).float().cpu()
        dim = want.shape[1]
        if session is not None:
            got = session.run(None, {name: t.numpy() for name, t in zip(NetworkInputs._fields, inputs, strict=False)})[
                0
            ]
            worst = max(worst, float((torch.from_numpy(got) - want).abs().max()))
    return (worst if session is not None else None), dim


def export_onnx(
    checkpoint: str | Path,
    out: str | Path,
    *,
    batch: str | int | None = "dynamic",
    opset: int | None = None,
    force: bool = False,
) -> ExportReport:
    """Write the eval network of ``checkpoint`` to ``out`` as ONNX (atomically) and check it.

    ``batch``: ``"dynamic"`` (a dynamic batch axis) or a fixed batch size; ``opset``: 14 to 20,
    default ``DEFAULT_OPSET``.

    When onnxruntime is installed the model is run on random batches (the traced batch and,
    with a dynamic batch, another size) and must match the PyTorch network with its fused
    ops to ``PARITY_TOLERANCE``; otherwise nothing is written and ``ExportError`` says by how
    much it differed. Bad checkpoints raise ``CheckpointError``, bad options ``ExportError``.
    ``out`` follows the output rules of ``star.output_paths.check_output_file``
    (never the checkpoint, never in a live run's folder; an existing file that is not an
    ONNX model only with ``force``), checked before the export.
    """
    out = Path(out)
    opset = DEFAULT_OPSET if opset is None else opset
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ExportError(f"--opset must be in [{MIN_OPSET}, {MAX_OPSET}] for this exporter, got {opset}")
    fixed = parse_batch(batch)
    if out.is_dir():
        raise ExportError(f"--out {out} is a directory; give the .onnx file to write")
    check_output_file(out, "ONNX model", kind="ONNX model", inputs=[checkpoint], force=force)
    try:
        import onnx  # noqa: F401  (torch's exporter serialises through it)
    except ImportError:
        raise ExportError("star export needs the onnx package: pip install 'star-reid[export]'") from None

    embedder = Embedder.from_checkpoint(checkpoint, device="cpu")
    shape = (embedder.seq_len, embedder.height, embedder.width)
    traced = example_inputs(fixed or 2, *shape)
    try:
        model_bytes = _trace_to_onnx(export_network(embedder.model), traced, opset, dynamic=fixed is None)
    except torch.onnx.errors.OnnxExporterError as exc:  # an op of this model config has no ONNX form
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"cannot export the model of {checkpoint} at opset {opset}: {first}") from None
    info = {
        "checkpoint": str(checkpoint),
        "inputs": list(NetworkInputs._fields),
        "output": OUTPUT_NAME,
        "embedding_dim": embedder.model.feature_dim,
        "normalisation": "ImageNet mean/std of RGB in [0, 1]",
        "modality": {"0": "infrared", "1": "visible"},
    }
    model_bytes = _with_metadata(
        model_bytes,
        {
            META_SEQ_LEN: str(embedder.seq_len),
            META_HEIGHT: str(embedder.height),
            META_WIDTH: str(embedder.width),
            META_INFO: json.dumps(info),
        },
    )
    checks = [traced] if fixed else [traced, example_inputs(3, *shape, seed=1)]
    worst, dim = _max_abs_diffs(model_bytes, embedder, checks)
    if worst is not None and not worst <= PARITY_TOLERANCE:
        raise ExportError(
            f"the ONNX model of {checkpoint} differs from PyTorch by {worst:.3g} (> {PARITY_TOLERANCE:g}); "
            f"{out} not written"
        )
    prepare_output_file(out, "ONNX model")
    atomic_write(out, lambda f: f.write(model_bytes))
    return ExportReport(out, opset, fixed, dim, worst)


__all__ = ["export_onnx", "ExportReport", "parse_batch", "DEFAULT_OPSET", "PARITY_TOLERANCE"]
