"""The error of ``star export`` and of running an exported model."""

from __future__ import annotations

from ..errors import StarError


class ExportError(StarError, RuntimeError):
    """An ONNX export cannot be made or an exported model cannot be used; the message names the file."""
