"""What SAC, TD3 and DDPG share on the driver side: the actor is the policy the runners get, and a
checkpoint holds the learner, the update budget and (optionally) the replay buffer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from kuberl.algorithm import Algorithm
from kuberl.core.models import weights_to_numpy


class OffPolicyActorAlgorithm(Algorithm):
    """Subclasses set `learner` (with an `actor` module), `budget` (its `credit`) and `buffer` in setup()."""

    budget: Any
    buffer: Any

    def policy_module(self) -> torch.nn.Module:
        actor: torch.nn.Module = self.learner.actor
        return actor

    def get_weights(self) -> dict[str, np.ndarray]:
        return weights_to_numpy(self.learner.actor)

    def algorithm_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"learner": self.learner.get_state(), "update_credit": self.budget.credit}
        if self.config.store_buffer_in_checkpoints:  # type: ignore[attr-defined]
            state["replay"] = self.buffer.state()
        return state

    def set_algorithm_state(self, state: Mapping[str, Any]) -> None:
        self.learner.set_state(state["learner"])
        self.budget.credit = float(state["update_credit"])
        if "replay" in state:
            self.buffer.set_state(state["replay"])
