"""ImageNet weights for the two-stream backbone, from a local file; never downloads.

This is the only module of ``star.models`` that reads files.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision

from ..errors import StarError
from .backbone import STEM_NAMES, TwoStreamResNet
from .config import IMAGENET


class PretrainedWeightsError(StarError, RuntimeError):
    """The configured pretrained weights file cannot be read or holds no state dict."""


class PretrainedWeightsNotFoundError(PretrainedWeightsError, FileNotFoundError):
    """Pretrained weights are required (``backbone.require_pretrained``) but not found."""


log = logging.getLogger(__name__)

# torchvision keys of the stem; copied into both modality-specific stems.
_STEM_PREFIXES = ("conv1.", "bn1.")


@dataclass
class LoadReport:
    """What ``load_backbone_weights`` did.

    ``loaded``: backbone keys filled; ``skipped``: checkpoint keys not used;
    ``missing``: backbone tensors the checkpoint did not cover.
    """

    path: Path
    loaded: list[str]
    skipped: list[str]
    missing: list[str]


def imagenet_checkpoint_candidates(arch: str) -> list[Path]:
    """Where torchvision keeps its ImageNet weights of ``arch`` in the torch hub cache (V1 first)."""
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    weights = torchvision.models.get_model_weights(arch)
    return [checkpoints / Path(urlparse(w.url).path).name for w in weights]


def resolve_pretrained(source: str, arch: str) -> tuple[Path | None, str]:
    """The file ``source`` names (``"imagenet"`` = the hub cache), or None and what was looked for."""
    if source == IMAGENET:
        candidates = imagenet_checkpoint_candidates(arch)
        found = next((p for p in candidates if p.is_file()), None)
        return found, "torchvision's ImageNet weights of " + arch + " at " + " or ".join(map(str, candidates))
    path = Path(source).expanduser()
    return (path if path.is_file() else None), str(path)


def _state_dict(path: Path) -> Mapping[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt or foreign file is an error even offline
        # torch's message spans many lines and advises weights_only=False, which would run pickled
        # code from an unknown file: name the file and the kind of failure only.
        raise PretrainedWeightsError(
            f"could not read pretrained weights from {path}: not a torch state dict file or a damaged one "
            f"({type(exc).__name__})"
        ) from exc
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise PretrainedWeightsError(f"pretrained weights {path} hold a {type(obj).__name__}, not a state dict")
    return obj


def load_backbone_weights(backbone: TwoStreamResNet, path: str | Path) -> LoadReport:
    """Copy a torchvision ResNet state dict (or one of this backbone) into ``backbone``.

    ``conv1.*``/``bn1.*`` go into both stems, ``layer*`` one to one; other keys
    (``fc.*``) and tensors of another shape are skipped. Logs the loaded and
    skipped keys; warns about backbone tensors the file does not cover.
    """
    path = Path(path)
    source = _state_dict(path)
    own = backbone.state_dict()
    new: dict[str, torch.Tensor] = {}
    skipped: list[str] = []
    for key, value in source.items():
        if key in own:
            targets = [key]
        elif key.startswith(_STEM_PREFIXES):
            targets = [f"{stem}.{key}" for stem in STEM_NAMES]
        else:
            targets = []
        fitting = [t for t in targets if torch.is_tensor(value) and own[t].shape == value.shape]
        if not fitting:
            skipped.append(key)
        new.update((t, value) for t in fitting)
    backbone.load_state_dict(new, strict=False)
    # num_batches_tracked only counts BN updates; old torchvision files lack it.
    missing = [k for k in own if k not in new and not k.endswith("num_batches_tracked")]
    report = LoadReport(path, sorted(new), skipped, missing)
    log.info("loaded %d backbone tensors from %s; skipped %d: %s", len(new), path, len(skipped), skipped)
    if missing:
        warnings.warn(
            f"pretrained weights {path} do not cover {len(missing)} backbone tensors, left randomly "
            f"initialised: {missing[:8]}{' ...' if len(missing) > 8 else ''}",
            stacklevel=2,
        )
    return report


def init_pretrained(backbone: TwoStreamResNet, source: str | None, require: bool = False) -> LoadReport | None:
    """Load ``source`` (path, ``"imagenet"`` or None) into the backbone if the file is there.

    A missing file raises ``PretrainedWeightsNotFoundError`` (a ``FileNotFoundError``) when ``require``; otherwise it
    gives one warning and the backbone keeps its random initialisation.
    """
    if source is None:
        if require:
            raise PretrainedWeightsNotFoundError("pretrained backbone weights are required but no source is configured")
        return None
    path, looked_for = resolve_pretrained(source, backbone.name)
    if path is None:
        message = f"pretrained backbone weights not found: {looked_for}"
        if require:
            raise PretrainedWeightsNotFoundError(message + " (backbone.require_pretrained is set)")
        warnings.warn(message + "; the backbone is randomly initialised", stacklevel=2)
        return None
    return load_backbone_weights(backbone, path)
