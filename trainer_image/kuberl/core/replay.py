"""Replay buffers for off-policy learners: uniform, and prioritized (Schaul et al. 2016).

Both store flat transitions [B, ...] column by column in numpy arrays preallocated on the first
`add` (the columns and their shapes come from that first batch), as a ring buffer that overwrites
the oldest transitions once full. `sample` returns the columns plus `weights` (importance weights,
ones for uniform replay) and `indices` (to hand new priorities back after the update).

Prioritized Experience Replay, proportional variant (https://arxiv.org/abs/1511.05952): item i is
drawn with probability P(i) = p_i^α / Σ_k p_k^α, where p_i = |δ_i| + ε; the sampling bias is
corrected by importance weights w_i = (N · P(i))^-β / max_j w_j. A sum-tree gives O(log N) sampling
and updates, and a min-tree gives max_j w_j (from the smallest priority) without a scan. Both trees
are flat numpy arrays; sampling a batch descends the tree for all draws at once, one level per step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

WEIGHTS = "weights"
INDICES = "indices"


class ReplayBuffer:
    """Uniform replay: a ring buffer of transitions, sampled uniformly with replacement."""

    def __init__(self, capacity: int, *, seed: int | None = None) -> None:
        if capacity < 1:
            raise ValueError(f"replay capacity must be at least 1, got {capacity}")
        self.capacity = int(capacity)
        self.rng = np.random.default_rng(seed)
        self._storage: dict[str, np.ndarray] = {}
        self._next = 0
        self._size = 0

    def __len__(self) -> int:
        return self._size

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self._storage)

    def add(self, batch: Mapping[str, np.ndarray]) -> None:
        """Append flat transitions (every column [B, ...] with the same B)."""
        self._insert(batch)

    def _insert(self, batch: Mapping[str, np.ndarray]) -> np.ndarray:
        """Write the batch into the ring; returns the slots written."""
        arrays = {k: np.asarray(v) for k, v in batch.items()}
        if not arrays:
            raise ValueError("cannot add an empty batch (no columns)")
        sizes = {k: len(v) for k, v in arrays.items()}
        b = next(iter(sizes.values()))
        if any(s != b for s in sizes.values()):
            raise ValueError(f"all columns must have the same length, got {sizes}")
        if not self._storage:
            for k, v in arrays.items():
                self._storage[k] = np.zeros((self.capacity, *v.shape[1:]), dtype=v.dtype)
        elif set(arrays) != set(self._storage):
            raise ValueError(
                f"batch columns {sorted(arrays)} differ from the buffer's columns {sorted(self._storage)}"
            )
        if b == 0:
            return np.zeros(0, dtype=np.int64)
        if b > self.capacity:  # only the newest `capacity` transitions would survive anyway
            arrays = {k: v[-self.capacity :] for k, v in arrays.items()}
            b = self.capacity
        idx = (self._next + np.arange(b)) % self.capacity
        for k, v in arrays.items():
            self._storage[k][idx] = v
        self._next = int((self._next + b) % self.capacity)
        self._size = min(self._size + b, self.capacity)
        return idx.astype(np.int64)

    def _gather(self, idx: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
        out = {k: v[idx] for k, v in self._storage.items()}
        out[WEIGHTS] = weights.astype(np.float32)
        out[INDICES] = idx.astype(np.int64)
        return out

    def _check_sample(self, n: int) -> None:
        if self._size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        if n < 1:
            raise ValueError(f"sample size must be at least 1, got {n}")

    def sample(self, n: int) -> dict[str, np.ndarray]:
        """`n` transitions drawn uniformly with replacement, with `weights` (ones) and `indices`."""
        self._check_sample(n)
        idx = self.rng.integers(0, self._size, size=n)
        return self._gather(idx, np.ones(n, dtype=np.float32))

    # -- checkpoints -------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything needed to continue exactly: the filled part of storage, ring position, RNG."""
        return {
            "capacity": self.capacity,
            "next": self._next,
            "size": self._size,
            # Before the ring wraps the filled slots are [0, size); after, all of them.
            "storage": {k: v[: self._size].copy() for k, v in self._storage.items()},
            "dtypes_shapes": {k: (v.dtype.str, v.shape[1:]) for k, v in self._storage.items()},
            "rng": self.rng.bit_generator.state,
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        if int(state["capacity"]) != self.capacity:
            raise ValueError(
                f"replay state has capacity {state['capacity']}, this buffer {self.capacity}: "
                "restore into a buffer of the same capacity"
            )
        self._storage = {}
        for k, (dtype, shape) in state["dtypes_shapes"].items():
            self._storage[k] = np.zeros((self.capacity, *shape), dtype=np.dtype(dtype))
            filled = np.asarray(state["storage"][k])
            self._storage[k][: len(filled)] = filled
        self._next = int(state["next"])
        self._size = int(state["size"])
        self.rng.bit_generator.state = state["rng"]


class SumTree:
    """A complete binary tree over `capacity` leaves (padded to a power of two) in one flat array:
    node i has children 2i and 2i+1, the root is node 1, leaf j is node `size + j`. Internal nodes
    hold the sum (or min) of their children, so the root is the total."""

    def __init__(self, capacity: int, *, op: str = "sum") -> None:
        self.size = 1 << max(0, (capacity - 1).bit_length())
        self.depth = self.size.bit_length() - 1
        self.op = op
        self.neutral = 0.0 if op == "sum" else np.inf
        self.tree = np.full(2 * self.size, self.neutral, dtype=np.float64)

    def update(self, indices: np.ndarray, values: np.ndarray) -> None:
        """Set leaves and recompute their ancestors, one vectorised step per tree level."""
        nodes = np.asarray(indices, dtype=np.int64) + self.size
        self.tree[nodes] = values
        for _ in range(self.depth):
            nodes = np.unique(nodes // 2)
            left, right = self.tree[2 * nodes], self.tree[2 * nodes + 1]
            self.tree[nodes] = left + right if self.op == "sum" else np.minimum(left, right)

    def leaves(self, indices: np.ndarray) -> np.ndarray:
        return self.tree[np.asarray(indices, dtype=np.int64) + self.size]

    @property
    def root(self) -> float:
        return float(self.tree[1])

    def find_prefix_sum(self, mass: np.ndarray) -> np.ndarray:
        """For each u in `mass` (0 ≤ u < total), the leaf j with sum(leaves[:j]) ≤ u < sum(leaves[:j+1])."""
        u = np.array(mass, dtype=np.float64)
        nodes = np.ones(len(u), dtype=np.int64)
        for _ in range(self.depth):
            left = self.tree[2 * nodes]
            go_right = u >= left
            u = np.where(go_right, u - left, u)
            nodes = 2 * nodes + go_right
        return nodes - self.size


class PrioritizedReplayBuffer(ReplayBuffer):
    """Proportional prioritized replay. New transitions get the largest priority seen so far, so
    each is replayed at least about once before its TD error is known."""

    def __init__(
        self,
        capacity: int,
        *,
        alpha: float = 0.6,
        beta: float = 0.4,
        eps: float = 1e-6,
        seed: int | None = None,
    ) -> None:
        super().__init__(capacity, seed=seed)
        if alpha < 0:
            raise ValueError(f"alpha must be ≥ 0, got {alpha}")
        if beta < 0:
            raise ValueError(f"beta must be ≥ 0, got {beta}")
        if eps <= 0:
            raise ValueError(f"eps must be > 0 (a zero priority is never sampled again), got {eps}")
        self.alpha = alpha
        self.beta = beta
        self.eps = eps
        self.max_priority = 1.0
        self._sum = SumTree(self.capacity, op="sum")
        self._min = SumTree(self.capacity, op="min")

    def add(self, batch: Mapping[str, np.ndarray], *, priorities: np.ndarray | None = None) -> None:
        """Append transitions at the largest priority so far, or at known `priorities` (|TD errors|
        computed where they were collected, as Ape-X's actors do)."""
        idx = self._insert(batch)
        if priorities is not None:
            prio = np.asarray(priorities)
            self.update_priorities(idx, prio[len(prio) - len(idx) :])  # capacity may keep only the newest
        elif len(idx):
            self._set_leaves(idx, np.full(len(idx), self.max_priority**self.alpha))

    def _set_leaves(self, idx: np.ndarray, values: np.ndarray) -> None:
        self._sum.update(idx, values)
        self._min.update(idx, values)

    def sample(self, n: int, *, beta: float | None = None) -> dict[str, np.ndarray]:
        """`n` transitions drawn in proportion to priority^α (stratified over n equal slices of the
        total, as in the paper's Appendix B.2.1), with importance weights normalised by the largest."""
        self._check_sample(n)
        beta = self.beta if beta is None else beta
        total = self._sum.root
        mass = (np.arange(n) + self.rng.random(n)) * (total / n)
        idx = self._sum.find_prefix_sum(np.minimum(mass, np.nextafter(total, 0.0)))
        # Rounding in the tree's partial sums can, very rarely, walk past the last filled slot.
        idx = np.minimum(idx, self._size - 1)
        probs = self._sum.leaves(idx) / total
        min_prob = self._min.root / total
        weights = (probs / min_prob) ** (-beta)  # = (N·P(i))^-β / (N·P_min)^-β
        return self._gather(idx, weights)

    def update_priorities(self, indices: np.ndarray, priorities: np.ndarray) -> None:
        """Set p_i = |priorities_i| + eps for the sampled `indices` (e.g. absolute TD errors)."""
        idx = np.asarray(indices, dtype=np.int64)
        prio = np.abs(np.asarray(priorities, dtype=np.float64)) + self.eps
        if idx.shape != prio.shape:
            raise ValueError(f"indices {idx.shape} and priorities {prio.shape} differ in shape")
        if not np.all(np.isfinite(prio)):
            raise ValueError("priorities must be finite")
        if len(idx) and (idx.min() < 0 or idx.max() >= self._size):
            raise ValueError(f"indices must lie in [0, {self._size})")
        self._set_leaves(idx, prio**self.alpha)
        if len(prio):
            self.max_priority = max(self.max_priority, float(prio.max()))

    def priorities(self, indices: np.ndarray) -> np.ndarray:
        """The stored p_i^α of `indices`."""
        return self._sum.leaves(indices)

    def state(self) -> dict[str, Any]:
        return {
            **super().state(),
            "priorities": self._sum.leaves(np.arange(self._size)).copy(),
            "max_priority": self.max_priority,
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        super().set_state(state)
        self._sum = SumTree(self.capacity, op="sum")
        self._min = SumTree(self.capacity, op="min")
        if self._size:
            self._set_leaves(np.arange(self._size), np.asarray(state["priorities"], dtype=np.float64))
        self.max_priority = float(state["max_priority"])
