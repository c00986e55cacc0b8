"""Subprocess entry point of tests/test_engine_train.py: ``star.engine.Trainer(cfg).run()``.

Usage: ``python engine_train_runner.py CONFIG.json RESULT_DIR`` (also under torchrun).
Writes ``RESULT_DIR/summary_rank<R>.json`` (the returned summary) and
``RESULT_DIR/weights_rank<R>.pt`` (the final model state). With
``STAR_TEST_PAUSE_AT_CALL=N`` and ``STAR_TEST_PAUSE_FILE=PATH`` the N-th loss
computation writes PATH and then blocks, so the test can kill the process at a
known point in the middle of an epoch.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch

torch.set_num_threads(1)

from star.config import RunConfig  # noqa: E402
from star.engine import Trainer  # noqa: E402
from star.losses import StarLoss  # noqa: E402


class PausingLoss(StarLoss):
    """Writes ``flag`` and blocks in its ``call``-th computation."""

    def __init__(self, cfg, call: int, flag: Path):
        super().__init__(cfg)
        self.call, self.flag, self.calls = call, flag, 0

    def forward(self, outputs, pids):
        self.calls += 1
        if self.calls == self.call:
            self.flag.write_text("paused\n")
            time.sleep(3600)
        return super().forward(outputs, pids)


class PausingTrainer(Trainer):
    def __init__(self, cfg, call: int, flag: Path):
        super().__init__(cfg)
        self.call, self.flag = call, flag

    def build_loss(self):
        return PausingLoss(self.cfg.loss, self.call, self.flag)


def main() -> None:
    config_path, result_dir = Path(sys.argv[1]), Path(sys.argv[2])
    cfg = RunConfig.from_dict(json.loads(config_path.read_text()))
    pause = int(os.environ.get("STAR_TEST_PAUSE_AT_CALL", "0"))
    trainer = PausingTrainer(cfg, pause, Path(os.environ["STAR_TEST_PAUSE_FILE"])) if pause else Trainer(cfg)
    summary = trainer.run()
    rank = int(os.environ.get("RANK", "0"))
    result_dir.mkdir(parents=True, exist_ok=True)
    (result_dir / f"summary_rank{rank}.json").write_text(json.dumps(summary))
    torch.save(trainer.model.state_dict(), result_dir / f"weights_rank{rank}.pt")


if __name__ == "__main__":
    main()
