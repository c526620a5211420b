"""Replay of whole sequences for a recurrent agent network (QMIX/VDN with model.useLstm): the joint
runners' sequences (kuberl.core.multi_agent.joint_runner.Sequence) kept as they came, sampled uniformly
and padded to the longest in the batch, with a `valid` mask over the padded steps (as pymarl's episode
batches)."""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from kuberl.core.multi_agent.joint_runner import ACTIONS, OBS, REWARD, STATE, TERMINATED

VALID = "valid"
H0 = "h0"


class SequenceReplay:
    """Holds sequences up to `capacity` env steps in all; the oldest sequences go first."""

    def __init__(self, capacity: int, seed: int | None = None) -> None:
        self.capacity = capacity
        self.sequences: deque[dict[str, np.ndarray]] = deque()
        self.steps = 0
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.steps

    def add(self, sequences: list[dict[str, np.ndarray]]) -> None:
        for seq in sequences:
            self.sequences.append(seq)
            self.steps += len(seq[REWARD])
        while self.steps > self.capacity and len(self.sequences) > 1:
            self.steps -= len(self.sequences.popleft()[REWARD])

    def sample(self, steps: int) -> dict[str, np.ndarray]:
        """Sequences drawn uniformly (with replacement) until they hold at least `steps` env steps, padded:
        obs/state [B, T+1, …], actions [B, T, agents], reward/terminated/valid [B, T], h0 [B, agents, cell];
        terminated is 1 at an episode's terminal step only."""
        picked: list[dict[str, np.ndarray]] = []
        total = 0
        while total < steps and self.sequences:
            seq = self.sequences[int(self.rng.integers(len(self.sequences)))]
            picked.append(seq)
            total += len(seq[REWARD])
        b, t = len(picked), max(len(s[REWARD]) for s in picked)
        first = picked[0]
        out = {
            OBS: np.zeros((b, t + 1, *first[OBS].shape[1:]), np.float32),
            STATE: np.zeros((b, t + 1, *first[STATE].shape[1:]), np.float32),
            ACTIONS: np.zeros((b, t, *first[ACTIONS].shape[1:]), np.int64),
            REWARD: np.zeros((b, t), np.float32),
            TERMINATED: np.zeros((b, t), np.float32),
            VALID: np.zeros((b, t), np.float32),
            H0: np.stack([s[H0] for s in picked]),
        }
        for i, seq in enumerate(picked):
            n = len(seq[REWARD])
            out[OBS][i, : n + 1] = seq[OBS]
            out[STATE][i, : n + 1] = seq[STATE]
            out[ACTIONS][i, :n] = seq[ACTIONS]
            out[REWARD][i, :n] = seq[REWARD]
            out[TERMINATED][i, n - 1] = seq[TERMINATED]
            out[VALID][i, :n] = 1.0
        return out

    def state(self) -> dict[str, Any]:
        return {"sequences": list(self.sequences), "steps": self.steps, "rng": self.rng.bit_generator.state}

    def set_state(self, state: dict[str, Any]) -> None:
        self.sequences = deque(state["sequences"])
        self.steps = int(state["steps"])
        self.rng.bit_generator.state = state["rng"]
