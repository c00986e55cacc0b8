"""Where the library's messages go: the ``star`` logger, printed to stdout as plain lines.

Library modules report through ``logging.getLogger(__name__)`` (children of ``star``), never
``print``. :func:`log_to_stdout` gives the ``star`` logger a handler that writes each INFO
message (and anything above) to stdout as its bare text, the way the messages always
looked; the ``star`` command and ``Trainer.run`` call it. An application that attaches its
own handler to ``star`` first keeps it: then nothing is added. Progress bars and periodic
progress lines (``star.progress``) go to stderr as before, not through the logger.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["LOGGER_NAME", "log_to_stdout"]

LOGGER_NAME = "star"


class _StdoutHandler(logging.Handler):
    """Writes each record's message to the current ``sys.stdout`` (looked up at every record, so
    a redirected or captured stdout gets it) and flushes it: a killed run keeps its lines."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = sys.stdout
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:  # noqa: BLE001  # logging's rule: a failing handler reports, never raises
            self.handleError(record)


def log_to_stdout() -> None:
    """Print the ``star`` logger's INFO messages to stdout as plain lines, unless it has a handler."""
    logger = logging.getLogger(LOGGER_NAME)
    if logger.handlers:
        return
    handler = _StdoutHandler(logging.INFO)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
