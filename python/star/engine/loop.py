"""A small epoch-based training loop with hooks (the idea of fast-reid's ``train_loop``).

:class:`TrainerBase` runs the epochs and calls :meth:`TrainerBase.run_step` for every
batch; :class:`HookBase` objects registered on it are called, in registration order,
before and after the whole run, each epoch and each step. What a run does besides
the step (checkpoints, evaluation, logs) lives in hooks (``star.engine.hooks``), so a
subclass replaces one part without touching the others.

Counters: ``epoch`` is the 0-based epoch being trained, ``iter`` the 0-based iteration
inside it; ``start_epoch`` / ``max_epochs`` bound the loop (a hook's ``before_train``
may move ``start_epoch``, e.g. when it resumes a checkpoint).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Optional


class HookBase:
    """Does nothing at every point of the loop; subclasses override what they need.

    ``trainer`` is set when the hook is registered. ``after_train`` runs also when the
    run stops with an exception (and then possibly after a partial ``before_train``).
    """

    trainer: Optional["TrainerBase"] = None

    def before_train(self) -> None:
        pass

    def after_train(self) -> None:
        pass

    def before_epoch(self) -> None:
        pass

    def after_epoch(self) -> None:
        pass

    def before_step(self) -> None:
        pass

    def after_step(self) -> None:
        pass


class TrainerBase:
    """Runs ``epoch_batches()`` through ``run_step`` for epochs ``start_epoch..max_epochs-1``."""

    def __init__(self) -> None:
        self.hooks: list[HookBase] = []
        self.start_epoch = 0
        self.max_epochs = 0
        self.epoch = 0
        self.iter = 0

    def register_hooks(self, hooks: Sequence[HookBase]) -> None:
        for hook in hooks:
            hook.trainer = self
            self.hooks.append(hook)

    def train(self) -> None:
        """``before_train``, the epochs, ``after_train`` (always, also on an exception)."""
        try:
            self._call_hooks("before_train")
            for self.epoch in range(self.start_epoch, self.max_epochs):
                self.begin_epoch()
                self._call_hooks("before_epoch")
                for self.iter, batch in enumerate(self.epoch_batches()):
                    self._call_hooks("before_step")
                    self.run_step(batch)
                    self._call_hooks("after_step")
                self._call_hooks("after_epoch")
                self.end_epoch()
        finally:
            self._call_hooks("after_train")

    def epoch_batches(self) -> Iterable[Any]:
        """The batches of the current epoch."""
        raise NotImplementedError

    def run_step(self, batch: Any) -> None:
        """One optimisation step on ``batch``."""
        raise NotImplementedError

    def begin_epoch(self) -> None:
        """The trainer's own work before the hooks' ``before_epoch`` (nothing by default)."""

    def end_epoch(self) -> None:
        """The trainer's own work after the hooks' ``after_epoch`` (nothing by default)."""

    def _call_hooks(self, point: str) -> None:
        for hook in self.hooks:
            getattr(hook, point)()
