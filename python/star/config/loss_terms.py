"""Loss weights that contradict the model section, found at load rather than at the first training step.

A loss term with a non-zero weight needs model outputs (``star.losses.TERMS``) that a
switched-off model part does not produce (``star.models.absent_outputs``); training would
stop at its first step (``compute_losses``). A zero weight for an absent part is fine: the
term is not computed.
"""

from __future__ import annotations

from ..config_tree import ConfigError
from ..losses import TERMS
from ..models import absent_outputs
from .schema import RunConfig


def check_loss_terms(cfg: RunConfig) -> None:
    """``ConfigError`` naming the loss weight and the model switch of the first term whose inputs the model lacks."""
    absent = absent_outputs(cfg.model)
    for weight_field, needs, _ in TERMS.values():
        weight = getattr(cfg.loss, weight_field)
        switch = next((absent[need] for need in needs if need in absent), None)
        if weight and switch is not None:
            raise ConfigError(
                f"loss.{weight_field} = {weight!r} needs a model part that model.{switch} = false switches off; "
                f"set loss.{weight_field}: 0 or model.{switch}: true"
            )
