"""n-step transitions for off-policy learners (Sutton & Barto §7.1; Rainbow, Hessel et al. 2018,
https://arxiv.org/abs/1710.02298).

A time-major rollout [T, N] becomes flat transitions (s_t, a_t, R_t, s_{t+k}, terminated, γ^k) with
R_t = Σ_{j<k} γ^j r_{t+j}, where k ≤ n stops early at an episode end (terminated or truncated) or at
the end of the fragment. The learner's target is then R_t + discounts · (1 − terminateds) · Q(s_{t+k}):
a terminated episode never bootstraps, a truncated one bootstraps from its final observation (the
runner stores it in next_obs), and nothing leaks across episodes.
"""

from __future__ import annotations

import numpy as np

from kuberl.core.sample_batch import Columns, SampleBatch

DISCOUNTS = "discounts"


def nstep_transitions(batch: SampleBatch, *, n: int, gamma: float) -> dict[str, np.ndarray]:
    """Flat n-step transitions from a [T, N] rollout with obs, actions, rewards, terminateds,
    truncateds and next_obs. Returns obs, actions, rewards (float32), next_obs, terminateds (bool) and
    discounts (float32, γ^k for the k steps actually summed), each [T·N, ...] in time-major order."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    rewards = np.asarray(batch[Columns.REWARDS], dtype=np.float64)
    terms = np.asarray(batch[Columns.TERMINATEDS], dtype=bool)
    dones = np.logical_or(terms, np.asarray(batch[Columns.TRUNCATEDS], dtype=bool))
    T, N = rewards.shape
    t_idx = np.arange(T)[:, None].repeat(N, axis=1)

    ret = np.zeros((T, N), dtype=np.float64)
    last = t_idx.copy()  # index of the last step summed into each transition
    steps = np.zeros((T, N), dtype=np.int64)
    terminated = np.zeros((T, N), dtype=bool)
    active = np.ones((T, N), dtype=bool)
    cols = np.arange(N)[None, :]
    for j in range(n):  # n is small; every (t, env) pair advances at once
        idx = t_idx + j
        valid = active & (idx < T)
        safe = np.minimum(idx, T - 1)
        ret += np.where(valid, gamma**j * rewards[safe, cols], 0.0)
        last = np.where(valid, safe, last)
        steps += valid
        terminated |= valid & terms[safe, cols]
        active = valid & ~dones[safe, cols]

    def flat(x: np.ndarray) -> np.ndarray:
        return x.reshape(T * N, *x.shape[2:])

    next_obs = np.asarray(batch[Columns.NEXT_OBS])[last, cols]
    return {
        Columns.OBS: flat(np.asarray(batch[Columns.OBS])),
        Columns.ACTIONS: flat(np.asarray(batch[Columns.ACTIONS])),
        Columns.REWARDS: flat(ret.astype(np.float32)),
        Columns.NEXT_OBS: flat(next_obs),
        Columns.TERMINATEDS: flat(terminated),
        DISCOUNTS: flat((gamma**steps).astype(np.float32)),
    }
