"""A small epoch-based training loop with hooks (the idea of fast-reid's ``train_loop``).

:class:`TrainerBase` runs the epochs and calls :meth:`TrainerBase.run_step` for every
batch; the :class:`HookBase` objects registered on it are called, in the order of the
list given to :meth:`TrainerBase.register_hooks`, before and after the whole run, each
epoch and each step. What a run does besides the step (checkpoints, evaluation, logs)
lives in hooks (``star.engine.hooks``), so a subclass replaces one part without touching
the others.

The loop owns the run's :class:`~star.engine.state.TrainingState` and keeps its counters:
``epoch`` (0-based, the epoch being trained), ``iter`` (0-based, inside it) and ``step``
(optimiser steps taken, counted after each ``run_step``); ``start_epoch`` /
``max_epochs`` bound the loop (a hook's ``before_train`` may move ``start_epoch``, e.g.
when it resumes a checkpoint). Hooks hold no reference to the trainer: they get the state
and whatever else they need in their constructors.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from .state import TrainingState


class HookBase:
    """Does nothing at every point of the loop; subclasses override what they need.

    ``after_train`` runs also when the run stops with an exception (and then possibly after
    a partial ``before_train``).
    """

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
    """Runs ``epoch_batches()`` through ``run_step`` for epochs ``state.start_epoch..state.max_epochs-1``."""

    def __init__(self, state: TrainingState) -> None:
        self.state = state
        self.hooks: list[HookBase] = []

    def register_hooks(self, hooks: Sequence[HookBase]) -> None:
        """Appends ``hooks``; they are called in this order at every point of the loop."""
        self.hooks.extend(hooks)

    def train(self) -> None:
        """``before_train``, the epochs, ``after_train`` (always, also on an exception)."""
        state = self.state
        try:
            self._call_hooks("before_train")
            for epoch in range(state.start_epoch, state.max_epochs):
                state.epoch = epoch
                self.begin_epoch()
                self._call_hooks("before_epoch")
                for state.iter, batch in enumerate(self.epoch_batches()):
                    self._call_hooks("before_step")
                    self.run_step(batch)
                    state.step += 1
                    self._call_hooks("after_step")
                self._call_hooks("after_epoch")
                self.end_epoch()
        finally:
            self._call_hooks("after_train")

    def epoch_batches(self) -> Iterable[Any]:
        """The batches of the current epoch."""
        raise NotImplementedError

    def run_step(self, batch: Any) -> None:
        """One optimisation step on ``batch`` (the loop counts it in ``state.step`` afterwards)."""
        raise NotImplementedError

    def begin_epoch(self) -> None:
        """The trainer's own work before the hooks' ``before_epoch`` (nothing by default)."""

    def end_epoch(self) -> None:
        """The trainer's own work after the hooks' ``after_epoch`` (nothing by default)."""

    def _call_hooks(self, point: str) -> None:
        for hook in self.hooks:
            getattr(hook, point)()
