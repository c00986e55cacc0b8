"""Where pose / detector weights come from: a local ``.onnx`` file or rtmlib's cache. Nothing is downloaded.

A model is given as

- a path to an ``.onnx`` file (used as it is);
- a known name (``rtmpose-s``, ``rtmpose-m``, ``rtmpose-x``, ``yolox-tiny``, ``yolox-m``,
  ``yolox-x``: the models rtmlib's ``Body`` uses), or the URL / file name of an rtmlib
  checkpoint: looked up in rtmlib's cache, where rtmlib leaves the unzipped model as
  ``<cache>/<archive name without extension>.onnx``. The cache is
  ``$TORCH_HOME/hub/checkpoints`` when ``TORCH_HOME`` is set, otherwise
  ``${XDG_CACHE_HOME:-~/.cache}/rtmlib/hub/checkpoints`` (rtmlib 0.0.16's rule).

When neither is there, :class:`ModelNotFoundError` names the file to download (the URL
rtmlib would use, and its Hugging Face mirror) and where to put it.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

from .errors import ModelNotFoundError

_OPENMMLAB = "https://download.openmmlab.com/mmpose/v1/projects/"
_MIRROR = "https://huggingface.co/Tau-J/RTMPose/resolve/main/"
_SDK = _OPENMMLAB + "rtmposev1/onnx_sdk/"

# name -> (kind, URL rtmlib downloads, input size (height, width)) -- the models of rtmlib's Body modes.
KNOWN_MODELS: dict[str, tuple[str, str, tuple[int, int]]] = {
    "rtmpose-s": ("pose", _SDK + "rtmpose-s_simcc-body7_pt-body7_420e-256x192-acd4a1ef_20230504.zip", (256, 192)),
    "rtmpose-m": ("pose", _SDK + "rtmpose-m_simcc-body7_pt-body7_420e-256x192-e48f03d0_20230504.zip", (256, 192)),
    "rtmpose-x": ("pose", _SDK + "rtmpose-x_simcc-body7_pt-body7_700e-384x288-71d7b7e9_20230629.zip", (384, 288)),
    "yolox-tiny": ("det", _SDK + "yolox_tiny_8xb8-300e_humanart-6f3252f9.zip", (416, 416)),
    "yolox-m": ("det", _SDK + "yolox_m_8xb8-300e_humanart-c2c7a14a.zip", (640, 640)),
    "yolox-x": ("det", _SDK + "yolox_x_8xb8-300e_humanart-a39d44ed.zip", (640, 640)),
}
DEFAULT_POSE_MODEL = "rtmpose-m"  # rtmlib Body(mode='balanced')
DEFAULT_DET_MODEL = "yolox-m"


def rtmlib_cache_dir() -> Path:
    """rtmlib's checkpoint directory (the same rule as rtmlib 0.0.16; created by nobody here)."""
    torch_home = os.environ.get("TORCH_HOME")
    if torch_home:
        base = Path(torch_home).expanduser()
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "rtmlib"
    return base / "hub" / "checkpoints"


def mirror_url(url: str) -> str | None:
    """The Hugging Face mirror rtmlib falls back to for an OpenMMLab URL (None for other hosts)."""
    return _MIRROR + url[len(_OPENMMLAB) :] if url.startswith(_OPENMMLAB) else None


def _cache_name(url_or_file: str) -> str:
    """The file rtmlib leaves in its cache for a checkpoint URL or archive name."""
    filename = os.path.basename(urlparse(url_or_file).path) or url_or_file
    return filename.split(".")[0] + ".onnx"


def resolve_model(spec: str | os.PathLike, what: str = "pose model") -> Path:
    """The local ``.onnx`` file for ``spec`` (path, known name, rtmlib URL or file name).

    Raises :class:`ModelNotFoundError` (saying what to download and where to put it)
    when the file is neither at the given path nor in rtmlib's cache.
    """
    text = os.fspath(spec)
    path = Path(text).expanduser()
    if path.is_file():
        return path.resolve()
    url = KNOWN_MODELS[text][1] if text in KNOWN_MODELS else text if "://" in text else None
    cache = rtmlib_cache_dir()
    candidates = []
    if url is not None or text.endswith(".zip"):
        candidates.append(cache / _cache_name(url or text))
    elif os.sep not in text and "/" not in text:
        candidates.append(cache / text)  # a bare file name: perhaps it sits in the cache
        if not text.endswith(".onnx"):
            candidates.append(cache / _cache_name(text))
    for c in candidates:
        if c.is_file():
            return c.resolve()
    looked = ", ".join(str(c) for c in ([] if url is not None else [path]) + candidates)
    if url is not None:
        mirror = mirror_url(url)
        raise ModelNotFoundError(
            f"{what} {text!r} is not on this machine (looked for {looked}); star pose never downloads.\n"
            f"  download: {url}\n"
            + (f"  (mirror:  {mirror})\n" if mirror else "")
            + f"  then unzip it and put its end2end.onnx at {candidates[0]}\n"
            f"  (or pass the .onnx file's path instead of {text!r})"
        )
    names = ", ".join(n for n, (kind, _, _) in KNOWN_MODELS.items() if (kind == "det") == ("detector" in what))
    raise ModelNotFoundError(
        f"{what} not found: {text} (looked for {looked}); star pose never downloads.\n"
        f"  pass an existing .onnx file, or one of {names} once it is in rtmlib's cache {cache}\n"
        f"  (rtmlib downloads them there; e.g. "
        f"{KNOWN_MODELS[DEFAULT_POSE_MODEL if 'pose' in what else DEFAULT_DET_MODEL][1]})"
    )
