"""The ``star`` command line. The only package of the library that parses arguments.

Each subcommand is a ``_cmd_<name>(args)`` function beside the arguments it declares, in
``data_commands`` (env, synth, check-data, pose), ``run_commands`` (train, demo, eval,
extract, export) and ``report_commands`` (visrank, explain, table); ``arguments`` holds
what several commands share. The work itself lives in the library modules, so the Python
API mirrors the CLI.

Errors (:func:`exit_status`): a :class:`star.errors.StarError` (a problem the user can
fix) is printed as one ``error:`` line and gives its exit code (3 for a diverged training,
else 1), and so is an OSError the machine caused (disk full, read-only, no permission);
Ctrl-C prints one line and gives 130. Any other exception is a bug and propagates with its
traceback. ``STAR_DEBUG=1`` shows the traceback of user errors too.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable

from star._version import __version__
from star.console import log_to_stdout
from star.errors import StarError, is_environment_write_error, write_failure_reason

from . import data_commands, report_commands, run_commands

# The exit code of a command stopped by Ctrl-C (128 + SIGINT), as a shell reports it.
INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="star",
        description="STAR video visible-infrared person re-ID: data, pose, training, evaluation.",
    )
    parser.add_argument("--version", action="version", version=f"star-reid {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for commands in (data_commands, run_commands, report_commands):
        commands.add_commands(sub)
    return parser


def _error_code(error: StarError) -> int:
    if "star.engine" in sys.modules:  # only the engine raises TrainingDiverged; importing it costs seconds
        from star.engine import TrainingDiverged

        if isinstance(error, TrainingDiverged):
            return 3
    return 1


def exit_status(command: Callable[[], int | None]) -> int:
    """Runs ``command`` and gives its exit status; a user's or the machine's error is one line on stderr."""
    try:
        return int(command() or 0)
    except StarError as e:
        if os.environ.get("STAR_DEBUG") == "1":
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        return _error_code(e)
    except OSError as e:
        if not is_environment_write_error(e):
            raise  # a bug: shown with its traceback
        # the machine refused a file operation outside star.fileio's writers (a folder, OpenCV)
        if os.environ.get("STAR_DEBUG") == "1":
            traceback.print_exc()
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{write_failure_reason(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # every command writes atomically and resumes (train: last.pt; pose: its shards)
        print("\ninterrupted, rerun the same command to resume", file=sys.stderr)
        return INTERRUPTED


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    log_to_stdout()  # the library's messages: plain lines on stdout
    return exit_status(lambda: args.func(args))
