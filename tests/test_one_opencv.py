"""One OpenCV per install: opencv-python, -headless, -contrib-python and -contrib-python-headless
all install the same `cv2` package over one another; uninstalling any one of them breaks the others."""

from __future__ import annotations

import importlib.metadata as md
import re
from pathlib import Path

import tomllib
from packaging.requirements import Requirement

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
OURS = "opencv-python-headless"


def _name(text: str) -> str:
    return re.sub(r"[-_.]+", "-", text).lower()


def _opencv(names) -> set[str]:
    return {n for n in names if n.startswith("opencv-")}


def _requires(dist: str) -> set[str]:
    """The unconditional requirements of an installed distribution (markers evaluated here, no extras)."""
    out = set()
    for text in md.requires(dist) or []:
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            out.add(_name(req.name))
    return out


def test_this_environment_has_exactly_one_opencv():
    installed = _opencv(_name(d.metadata["Name"]) for d in md.distributions() if d.metadata["Name"])
    assert installed == {OURS}, (
        f"installed OpenCV distributions: {sorted(installed)}; they overwrite one another's cv2. Fix: "
        "pip uninstall -y opencv-python opencv-contrib-python && pip install --force-reinstall --no-deps "
        "opencv-python-headless (scripts/install.sh installs rtmlib with --no-deps for this reason)"
    )


def test_install_and_pose_extras_pull_in_one_opencv():
    """`pip install .` / `.[pose]` / `.[test]`: our requirements and everything they require, as installed here."""
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]
    for extra in ("", "pose", "test"):
        todo = [_name(Requirement(r).name) for r in project["dependencies"] + extras.get(extra, [])]
        seen: set[str] = set()
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            try:
                todo += _requires(name)
            except md.PackageNotFoundError:
                pass  # not installed here (e.g. onnxruntime-gpu): its own requirements are unknown offline
        assert _opencv(seen) == {OURS}, f"pip install '.[{extra}]' would bring {sorted(_opencv(seen))}"
    # rtmlib (the tests' oracle) requires opencv-python and opencv-contrib-python: never an extra of ours
    assert not any(_name(Requirement(r).name) == "rtmlib" for r in sum(extras.values(), project["dependencies"]))
    # onnxruntime and onnxruntime-gpu both provide the onnxruntime module: no extra lists both
    for extra, reqs in extras.items():
        assert not {"onnxruntime", "onnxruntime-gpu"} <= {_name(Requirement(r).name) for r in reqs}, extra
    assert [_name(r) for r in extras["pose-gpu"]] == ["onnxruntime-gpu"]
