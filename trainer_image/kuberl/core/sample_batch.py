"""SampleBatch: time-major experience arrays, with `terminated` and `truncated` kept apart.

Keeping the two apart is what lets value targets bootstrap on truncation (a time limit is not a
terminal state) instead of treating every episode end as terminal.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Final

import numpy as np


class Columns:
    """Column names, as constants so a typo is an AttributeError, not a silent new key."""

    OBS: Final = "obs"
    NEXT_OBS: Final = "next_obs"
    ACTIONS: Final = "actions"
    REWARDS: Final = "rewards"
    TERMINATEDS: Final = "terminateds"
    TRUNCATEDS: Final = "truncateds"
    ACTION_LOGP: Final = "action_logp"
    ACTION_DIST_INPUTS: Final = "action_dist_inputs"
    VF_PREDS: Final = "vf_preds"
    # V(s_{t+1}) for every step: the next step's prediction, V(final_obs) at truncations, the
    # bootstrap value after the last step. Zeroed by `terminateds` inside the return estimators.
    NEXT_VF_PREDS: Final = "next_vf_preds"
    ADVANTAGES: Final = "advantages"
    VALUE_TARGETS: Final = "value_targets"


class SampleBatch(dict[str, np.ndarray]):
    """A mapping of column → array shaped [T, N, ...] (time-major, N parallel sub-environments)."""

    @property
    def shape(self) -> tuple[int, int]:
        rewards = self[Columns.REWARDS]
        return int(rewards.shape[0]), int(rewards.shape[1])

    @property
    def env_steps(self) -> int:
        t, n = self.shape
        return t * n

    @staticmethod
    def concat_envs(batches: list[SampleBatch]) -> SampleBatch:
        """Join batches of equal length T from several runners along the environment axis."""
        if len(batches) == 1:
            return batches[0]
        keys = batches[0].keys()
        return SampleBatch({k: np.concatenate([b[k] for b in batches], axis=1) for k in keys})

    def flatten(self) -> SampleBatch:
        """[T, N, ...] → [T*N, ...] for minibatch SGD, once return estimation is done."""
        return SampleBatch({k: v.reshape(-1, *v.shape[2:]) for k, v in self.items()})

    def minibatches(self, size: int, rng: np.random.Generator) -> Iterator[Mapping[str, np.ndarray]]:
        """Shuffled minibatches of a flat batch; a final short remainder is dropped (as SB3 and CleanRL do not,
        but a minibatch far smaller than the others makes a noisy, over-weighted step)."""
        n = len(next(iter(self.values())))
        perm = rng.permutation(n)
        for start in range(0, n - size + 1, size):
            idx = perm[start : start + size]
            yield {k: v[idx] for k, v in self.items()}
