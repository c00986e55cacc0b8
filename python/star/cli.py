"""The ``star`` command line. The only module of the package that parses arguments.

Each subcommand is a ``_cmd_<name>(args)`` function registered in ``_build_parser``;
the work itself lives in the library modules so the Python API mirrors the CLI.
"""

from __future__ import annotations

import argparse
import sys


def _cmd_env(args: argparse.Namespace) -> int:
    import star_ext

    print(star_ext.format_build_info(star_ext.build_info()))
    return 0


def _build_parser() -> argparse.ArgumentParser:
    from star import __version__

    parser = argparse.ArgumentParser(
        prog="star",
        description="STAR video visible-infrared person re-ID: data, pose, training, evaluation.",
    )
    parser.add_argument("--version", action="version", version=f"star-reid {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("env", help="print torch/CUDA versions and which fused ops have CPU/CUDA kernels")
    p.set_defaults(func=_cmd_env)

    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
