"""Loading of star_ext._C: kernels registered, build record, version mismatch, fallback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import star_ext
from star import cli
from star_ext import _loader

OPS = ("keypoint_pool", "guided_gem_pool", "keypoint_graph_attention")


def test_compiled_extension_is_loaded_with_cpu_kernels():
    assert star_ext.HAS_C, star_ext.FALLBACK_REASON
    info = star_ext.build_info()
    assert info["built_with"]["torch"].split("+")[0] == torch.__version__.split("+")[0]
    for name in OPS:
        assert hasattr(torch.ops.star, name) and hasattr(torch.ops.star, f"{name}_backward")
        assert info["kernels"][name]["cpu"], name


def test_star_env_lists_every_op(capsys):
    assert cli.main(["env"]) == 0
    out = capsys.readouterr().out
    assert "star_ext._C       loaded" in out
    for name in OPS:
        line = next(line for line in out.splitlines() if line.startswith(name))
        assert line.split()[1] == "yes"


def test_version_mismatch_says_how_to_rebuild():
    with pytest.raises(
        star_ext.ExtensionMismatchError, match=r"built with torch 1\.0\.0 .* pip install --no-build-isolation"
    ):
        _loader._check_versions({"torch": "1.0.0", "with_cuda": False})
    with pytest.raises(star_ext.ExtensionMismatchError, match="CUDA 99.9 kernels"):
        _loader._check_versions({"torch": torch.__version__, "with_cuda": True, "cuda": "99.9"})


def _python_only_copy(tmp_path: Path, build_info: dict | None = None) -> Path:
    """star_ext's Python files without _C, as a checkout that was never built looks.

    The copy gets another package name so an installed star_ext cannot shadow it.
    """
    src = Path(star_ext.__file__).parent
    dst = tmp_path / "star_ext_unbuilt"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("_C*", "_build_info.json", "__pycache__"))
    if build_info is not None:
        (dst / "_build_info.json").write_text(json.dumps(build_info))
    return tmp_path


def _run(code: str, path: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "STAR_EXT_REQUIRED"}
    environ.update(PYTHONPATH=str(path), **env)
    return subprocess.run(
        [sys.executable, "-c", code], cwd=path, env=environ, capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow  # a fresh interpreter importing torch: 2 s
def test_missing_extension_falls_back_with_one_warning(tmp_path):
    path = _python_only_copy(tmp_path)
    code = (
        "import warnings, torch\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    import star_ext_unbuilt as star_ext\n"
        "print(star_ext.HAS_C, sum('Falling back' in str(x.message) for x in w))\n"
        "out = star_ext.keypoint_pool(torch.ones(1, 2, 3, 3), torch.full((1, 1, 3), 0.5), 0.2)\n"
        "print(tuple(out.shape))\n"
    )
    res = _run(code, path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split("\n")[:2] == ["False 1", "(1, 1, 2)"]


@pytest.mark.slow  # a fresh interpreter importing torch: 2 s
def test_required_extension_missing_is_an_error(tmp_path):
    res = _run("import star_ext_unbuilt", _python_only_copy(tmp_path), STAR_EXT_REQUIRED="1")
    assert res.returncode != 0
    assert "STAR_EXT_REQUIRED=1 forbids the pure-PyTorch fallback" in res.stderr


@pytest.mark.slow  # a fresh interpreter importing torch: 2 s
def test_build_for_another_torch_is_one_clear_error(tmp_path):
    path = _python_only_copy(tmp_path, {"torch": "1.0.0", "cuda": None, "with_cuda": False})
    res = _run("import star_ext_unbuilt", path)
    assert res.returncode != 0
    assert "ExtensionMismatchError: star_ext._C was built with torch 1.0.0" in res.stderr


def test_cuda_build_registers_cuda_kernels():
    info = star_ext.build_info()
    if not info["built_with"]["with_cuda"]:
        pytest.skip("extension built without CUDA kernels (CPU-only torch or no toolkit)")
    for name in OPS:
        assert info["kernels"][name]["cuda"], f"{name} has no CUDA kernel in a CUDA build"
