"""Self-play bookkeeping: the opponent pool, win/draw/loss rates, and games against a random opponent.

The pool holds frozen copies of the learning policy's weights, taken every `snapshotEveryIterations`
(oldest out first, at most `poolSize`). Runners draw an opponent per episode: the latest weights with
probability `latestProbability`, else a uniformly drawn snapshot (as in OpenAI Five and RLlib's
self-play examples, so the learner keeps beating its past selves rather than chasing its tail).
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Iterable
from typing import Any

import numpy as np

from kuberl.core.multi_agent.mapping import SelfPlaySeats
from kuberl.core.multi_agent.runner import (
    RANDOM_POLICY,
    MultiAgentEnvRunner,
    MultiAgentRunnerConfig,
    PolicySlot,
)

OUTCOME_WINDOW = 100  # games in the reported rates, like the episode-return window


def rates(outcomes: Iterable[int]) -> dict[str, float | None]:
    """Win/draw/loss fractions of outcomes (+1 win, 0 draw, −1 loss); None without games."""
    arr = np.asarray(list(outcomes))
    if arr.size == 0:
        return {"win_rate": None, "draw_rate": None, "loss_rate": None}
    return {
        "win_rate": float(np.mean(arr > 0)),
        "draw_rate": float(np.mean(arr == 0)),
        "loss_rate": float(np.mean(arr < 0)),
    }


class OpponentPool:
    def __init__(self, size: int) -> None:
        self.snapshots: deque[dict[str, np.ndarray]] = deque(maxlen=size)
        self.taken = 0

    def add(self, weights: dict[str, np.ndarray]) -> None:
        # Copies: a learner's numpy view shares memory with parameters that keep training.
        self.snapshots.append({k: np.array(v, copy=True) for k, v in weights.items()})
        self.taken += 1

    def as_list(self) -> list[dict[str, np.ndarray]]:
        return list(self.snapshots)

    def state(self) -> dict[str, Any]:
        return {"snapshots": copy.deepcopy(self.as_list()), "taken": self.taken}

    def set_state(self, state: dict[str, Any]) -> None:
        self.snapshots.clear()
        self.snapshots.extend(state["snapshots"])
        self.taken = int(state["taken"])


def play_vs_random(
    config: MultiAgentRunnerConfig,
    learning: str,
    weights: dict[str, np.ndarray],
    *,
    games: int,
    explore: bool = False,
    max_steps: int = 100_000,
) -> dict[str, Any]:
    """The learning policy against a uniformly random (legal-move) opponent in `games` games, in the
    driver. Each game runs in its own env copy and only its first episode counts, so quick games are not
    over-represented. Seats are drawn at random per game."""
    opponent = "__random__"
    slot = config.policies[learning]
    runner_config = MultiAgentRunnerConfig(
        env=config.env,
        env_config=config.env_config,
        num_envs=games,
        policies={
            learning: PolicySlot(
                slot.obs_space, slot.action_space, slot.policy, slot.model, slot.options, False, False
            ),
            opponent: PolicySlot(
                slot.obs_space, slot.action_space, RANDOM_POLICY, slot.model, {}, False, False
            ),
        },
        self_play=SelfPlaySeats(learning=learning, opponent=opponent, use_pool=False),
        seed=None if config.seed is None else config.seed + 1_000_003,
    )
    runner = MultiAgentEnvRunner(runner_config)
    try:
        runner.set_state({"weights": {learning: weights}})
        results: dict[int, int] = {}
        steps = 0
        while len(results) < games and steps < max_steps:
            sample = runner.sample(1, explore=explore)
            steps += 1
            for ep_id, outcome in zip(sample.outcome_ids, sample.outcomes, strict=True):
                if ep_id <= games:
                    results.setdefault(ep_id, outcome)
    finally:
        runner.close()
    return {"games": len(results), **rates(results.values())}
