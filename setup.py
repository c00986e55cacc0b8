"""Builds star_ext._C from csrc/ with torch's cpp_extension.

CPU kernels are always built. The CUDA kernels are built when torch is a CUDA
build and a CUDA toolkit is found, with or without a GPU; STAR_FORCE_CPU=1 and
STAR_FORCE_CUDA=1 override that choice. Build against the torch that will run
the package: ``pip install --no-build-isolation .``
"""

from __future__ import annotations

import datetime
import glob
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent
# Compute capabilities built when TORCH_CUDA_ARCH_LIST is unset and no GPU is
# visible (torch's own helper fails then): Ampere, Ada, Hopper, + PTX for newer.
DEFAULT_CUDA_ARCHS = "8.0;8.6;8.9;9.0+PTX"


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _toolkit_from_nvcc() -> str | None:
    """The toolkit folder nvcc really uses: `nvcc --dryrun` prints it as TOP.

    The nvcc on PATH may be a wrapper script somewhere else, so the folder
    above it is not necessarily the toolkit.
    """
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return None
    try:
        res = subprocess.run(
            [nvcc, "--dryrun", "-c", "-x", "cu", os.devnull, "-o", os.devnull],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"^#\$ TOP=(.+)$", res.stdout + res.stderr, re.MULTILINE)
    if match is None:
        return None
    top = os.path.realpath(match.group(1).strip())
    return top if os.path.isdir(os.path.join(top, "include")) else None


def _find_cuda_home() -> str | None:
    for var in ("CUDA_HOME", "CUDA_PATH"):
        path = os.environ.get(var)
        if path and os.path.isdir(path):
            return path
    top = _toolkit_from_nvcc()
    if top is not None:
        return top
    default = "/usr/local/cuda"
    return default if os.path.isdir(default) else None


# torch.utils.cpp_extension reads CUDA_HOME when it is imported: set it first.
_cuda_home = _find_cuda_home()
if _cuda_home is not None:
    os.environ["CUDA_HOME"] = _cuda_home

import torch  # noqa: E402
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension  # noqa: E402


def _want_cuda() -> bool:
    if _env_flag("STAR_FORCE_CPU"):
        return False
    if _env_flag("STAR_FORCE_CUDA"):
        if torch.version.cuda is None:
            sys.exit("STAR_FORCE_CUDA=1 but the installed torch is not a CUDA build")
        if _cuda_home is None:
            sys.exit("STAR_FORCE_CUDA=1 but no CUDA toolkit was found: set CUDA_HOME to the toolkit folder")
        return True
    return torch.version.cuda is not None and _cuda_home is not None


def _extra_cuda_includes() -> list[str]:
    """Header folders of the pip-installed CUDA libraries (nvidia/cu*/include).

    A partial toolkit may lack headers that torch's CUDA headers include
    (cusparse.h, cublas_v2.h, ...); the wheels torch depends on ship them.
    """
    found = []
    for base in sys.path:
        found += sorted(glob.glob(os.path.join(base, "nvidia", "cu*", "include")))
    return [path for path in dict.fromkeys(found) if os.path.isdir(path)]


def _extension():
    with_cuda = _want_cuda()
    sources = [
        "csrc/star.cpp",
        "csrc/validation.cpp",
        "csrc/autocast.cpp",
        "csrc/autograd.cpp",
        "csrc/ops.cpp",
        "csrc/transposed_template.cpp",
        *sorted(glob.glob("csrc/cpu/*.cpp")),
    ]
    # -fopenmp: at::parallel_for is a header template that runs serially unless
    # the including code is compiled with OpenMP (torch ships the same libgomp).
    # -fno-trapping-math lets GCC turn the selects of cpu/vector_math.h into SIMD
    # code (the kernels never rely on floating-point exceptions).
    cxx_flags = ["-O3", "-fopenmp", "-fno-trapping-math", "-DSTAR_PYTHON_MODULE"]
    link_flags = ["-fopenmp"]
    if not with_cuda:
        return (
            CppExtension("star_ext._C", sources, extra_compile_args={"cxx": cxx_flags}, extra_link_args=link_flags),
            False,
        )

    if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
        os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_CUDA_ARCHS
    # -isystem folders are searched after the toolkit's own -I include folder.
    system_includes = [flag for path in _extra_cuda_includes() for flag in ("-isystem", path)]
    sources += sorted(glob.glob("csrc/cuda/*.cu"))
    ext = CUDAExtension(
        "star_ext._C",
        sources,
        extra_compile_args={
            "cxx": cxx_flags + system_includes,
            "nvcc": ["-O3", "-lineinfo", "-DSTAR_PYTHON_MODULE"] + system_includes,
        },
        extra_link_args=link_flags,
    )
    return ext, True


_EXTENSION, _WITH_CUDA = _extension()


class BuildWithInfo(BuildExtension):
    """Builds the extension and records what it was built against.

    star_ext/__init__.py compares the record with the running torch before it
    loads _C, so a mismatch is one clear message instead of a symbol error.
    """

    def run(self):
        super().run()
        info = {
            "torch": torch.__version__,
            "cuda": torch.version.cuda if _WITH_CUDA else None,
            "cuda_archs": os.environ.get("TORCH_CUDA_ARCH_LIST") if _WITH_CUDA else None,
            "with_cuda": _WITH_CUDA,
            "python": sys.version.split()[0],
            "built_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        targets = {Path(self.build_lib) / "star_ext"}
        if self.inplace:
            targets.add(ROOT / "star_ext")
        for folder in targets:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "_build_info.json").write_text(json.dumps(info, indent=2) + "\n")


setup(
    packages=["star_ext", *find_packages(where="python")],
    package_dir={"star_ext": "star_ext", "star": "python/star"},
    # the demo's config (star demo); py.typed: the packages ship their annotations (PEP 561)
    package_data={"star.config": ["*.yaml"], "star": ["py.typed"], "star_ext": ["py.typed"]},
    ext_modules=[_EXTENSION],
    cmdclass={"build_ext": BuildWithInfo.with_options(use_ninja=True)},
)
