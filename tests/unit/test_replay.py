"""Replay buffers: ring-buffer wraparound, state round trips, the sum-tree, and PER's sampling
proportions and importance weights against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from kuberl.core.replay import PrioritizedReplayBuffer, ReplayBuffer, SumTree


def transitions(start: int, n: int) -> dict[str, np.ndarray]:
    ids = np.arange(start, start + n)
    return {
        "obs": np.stack([ids, -ids], axis=1).astype(np.float32),
        "actions": ids.astype(np.int64),
        "rewards": ids.astype(np.float32),
        "terminateds": ids % 2 == 0,
    }


# -- uniform ---------------------------------------------------------------------------------------


def test_ring_buffer_wraps_and_keeps_the_newest() -> None:
    buf = ReplayBuffer(5, seed=0)
    buf.add(transitions(0, 3))
    assert len(buf) == 3
    buf.add(transitions(3, 4))  # 7 items into 5 slots: 0 and 1 are overwritten by 5 and 6
    assert len(buf) == 5
    stored = sorted(buf.sample(500)["actions"].tolist())
    assert set(stored) == {2, 3, 4, 5, 6}
    buf.add(transitions(100, 12))  # larger than capacity: only the last 5 survive
    assert set(buf.sample(500)["actions"].tolist()) == {107, 108, 109, 110, 111}


def test_uniform_sample_columns_weights_indices_and_consistency() -> None:
    buf = ReplayBuffer(10, seed=1)
    buf.add(transitions(0, 10))
    s = buf.sample(32)
    assert s["obs"].shape == (32, 2)
    assert s["obs"].dtype == np.float32
    assert s["weights"].dtype == np.float32
    assert np.all(s["weights"] == 1.0)
    assert s["indices"].dtype == np.int64
    # every column of a row comes from the same stored transition
    np.testing.assert_array_equal(s["obs"][:, 0], s["actions"].astype(np.float32))
    np.testing.assert_array_equal(s["actions"], s["indices"])


def test_uniform_sampling_is_uniform() -> None:
    buf = ReplayBuffer(4, seed=2)
    buf.add(transitions(0, 4))
    counts = np.bincount(buf.sample(40_000)["actions"], minlength=4)
    chi2 = float(((counts - 10_000) ** 2 / 10_000).sum())
    assert chi2 < 16.3  # p = 0.001 for 3 degrees of freedom


def test_column_mismatch_and_empty_sampling_are_rejected() -> None:
    buf = ReplayBuffer(4)
    with pytest.raises(ValueError, match="empty"):
        buf.sample(1)
    buf.add(transitions(0, 2))
    bad = transitions(0, 2)
    bad["extra"] = np.zeros(2)
    with pytest.raises(ValueError, match="columns"):
        buf.add(bad)
    with pytest.raises(ValueError, match="same length"):
        buf.add({"obs": np.zeros((2, 2)), "actions": np.zeros(3)})


def test_uniform_state_round_trip_continues_identically() -> None:
    buf = ReplayBuffer(6, seed=3)
    buf.add(transitions(0, 8))
    buf.sample(3)
    other = ReplayBuffer(6, seed=99)
    other.set_state(buf.state())
    assert len(other) == len(buf)
    for a, b in [(buf.sample(7), other.sample(7)), (buf.sample(2), other.sample(2))]:
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    buf.add(transitions(50, 2))
    other.add(transitions(50, 2))
    np.testing.assert_array_equal(buf.sample(20)["actions"], other.sample(20)["actions"])


def test_state_of_partly_filled_buffer_and_capacity_mismatch() -> None:
    buf = ReplayBuffer(100, seed=0)
    buf.add(transitions(0, 3))
    state = buf.state()
    assert len(state["storage"]["obs"]) == 3  # only the filled part is saved
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(50).set_state(state)


# -- sum-tree --------------------------------------------------------------------------------------


def test_sum_tree_sums_updates_and_min() -> None:
    tree = SumTree(5)  # padded to 8 leaves
    assert tree.size == 8
    tree.update(np.arange(5), np.array([1.0, 2.0, 3.0, 4.0, 5.0]))
    assert tree.root == pytest.approx(15.0)
    assert tree.tree[2] == pytest.approx(10.0)  # leaves 0..3
    tree.update(np.array([1, 4]), np.array([0.5, 10.0]))
    assert tree.root == pytest.approx(1.0 + 0.5 + 3.0 + 4.0 + 10.0)
    mins = SumTree(5, op="min")
    mins.update(np.arange(5), np.array([3.0, 2.0, 0.25, 4.0, 5.0]))
    assert mins.root == pytest.approx(0.25)
    mins.update(np.array([2]), np.array([7.0]))
    assert mins.root == pytest.approx(2.0)


def test_sum_tree_prefix_sum_descent() -> None:
    tree = SumTree(4)
    tree.update(np.arange(4), np.array([1.0, 2.0, 3.0, 4.0]))  # cumulative: 1, 3, 6, 10
    mass = np.array([0.0, 0.99, 1.0, 2.99, 3.0, 5.99, 6.0, 9.99])
    np.testing.assert_array_equal(tree.find_prefix_sum(mass), [0, 0, 1, 1, 2, 2, 3, 3])


def test_sum_tree_of_capacity_one() -> None:
    tree = SumTree(1)
    tree.update(np.array([0]), np.array([2.0]))
    assert tree.root == 2.0
    np.testing.assert_array_equal(tree.find_prefix_sum(np.array([0.0, 1.9])), [0, 0])


# -- prioritized -----------------------------------------------------------------------------------


def test_per_sampling_follows_priorities() -> None:
    buf = PrioritizedReplayBuffer(4, alpha=1.0, beta=0.0, eps=1e-9, seed=0)
    buf.add(transitions(0, 4))
    buf.update_priorities(np.arange(4), np.array([1.0, 2.0, 3.0, 4.0]))
    n = 40_000
    counts = np.bincount(buf.sample(n)["indices"], minlength=4)
    expected = n * np.array([0.1, 0.2, 0.3, 0.4])
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 16.3  # p = 0.001 for 3 degrees of freedom


def test_per_alpha_flattens_priorities() -> None:
    buf = PrioritizedReplayBuffer(2, alpha=0.5, eps=1e-12, seed=0)
    buf.add(transitions(0, 2))
    buf.update_priorities(np.array([0, 1]), np.array([1.0, 9.0]))  # p^α = 1, 3 → P = 1/4, 3/4
    freq = np.bincount(buf.sample(20_000)["indices"], minlength=2) / 20_000
    np.testing.assert_allclose(freq, [0.25, 0.75], atol=0.02)


def test_per_importance_weights_match_hand_values() -> None:
    buf = PrioritizedReplayBuffer(4, alpha=1.0, beta=0.5, eps=1e-12, seed=0)
    buf.add(transitions(0, 4))
    buf.update_priorities(np.arange(4), np.array([1.0, 2.0, 3.0, 4.0]))
    s = buf.sample(200)
    # P = p/10, N = 4: w_i = (4·P_i)^-½ / (4·P_min)^-½ = (p_i / p_min)^-½ = p_i^-½
    np.testing.assert_allclose(s["weights"], (s["indices"] + 1.0) ** -0.5, rtol=1e-6)
    assert s["weights"].dtype == np.float32
    assert s["weights"].max() <= 1.0
    # a beta override: beta = 1 gives w = p_min / p_i
    s1 = buf.sample(50, beta=1.0)
    np.testing.assert_allclose(s1["weights"], 1.0 / (s1["indices"] + 1.0), rtol=1e-6)


def test_per_new_items_get_max_priority_and_updates_change_sampling() -> None:
    buf = PrioritizedReplayBuffer(8, alpha=1.0, eps=1e-12, seed=0)
    buf.add(transitions(0, 4))
    np.testing.assert_allclose(buf.priorities(np.arange(4)), 1.0)  # initial max priority 1
    buf.update_priorities(np.array([0, 1, 2, 3]), np.array([0.01, 0.01, 0.01, 5.0]))
    assert np.mean(buf.sample(2000)["indices"] == 3) > 0.95
    buf.add(transitions(4, 2))  # newcomers get the max priority seen (5)
    np.testing.assert_allclose(buf.priorities(np.array([4, 5])), 5.0)
    buf.update_priorities(np.array([3]), np.array([0.01]))
    freq = np.bincount(buf.sample(4000)["indices"], minlength=6) / 4000
    assert freq[4] + freq[5] > 0.95
    assert freq[3] < 0.02


def test_per_wraparound_replaces_priorities() -> None:
    buf = PrioritizedReplayBuffer(3, alpha=1.0, eps=1e-12, seed=0)
    buf.add(transitions(0, 3))
    buf.update_priorities(np.arange(3), np.array([0.5, 0.5, 0.5]))
    buf.add(transitions(3, 1))  # overwrites slot 0 with max priority (1.0)
    np.testing.assert_allclose(buf.priorities(np.arange(3)), [1.0, 0.5, 0.5])
    assert buf._sum.root == pytest.approx(2.0)


def test_per_rejects_bad_priorities() -> None:
    buf = PrioritizedReplayBuffer(4)
    buf.add(transitions(0, 2))
    with pytest.raises(ValueError, match="finite"):
        buf.update_priorities(np.array([0]), np.array([np.nan]))
    with pytest.raises(ValueError, match="indices"):
        buf.update_priorities(np.array([3]), np.array([1.0]))


def test_per_state_round_trip() -> None:
    buf = PrioritizedReplayBuffer(5, alpha=0.7, beta=0.5, seed=4)
    buf.add(transitions(0, 7))
    buf.update_priorities(np.array([0, 2, 4]), np.array([3.0, 0.1, 7.0]))
    other = PrioritizedReplayBuffer(5, alpha=0.7, beta=0.5, seed=123)
    other.set_state(buf.state())
    assert other.max_priority == buf.max_priority
    np.testing.assert_allclose(other.priorities(np.arange(5)), buf.priorities(np.arange(5)))
    a, b = buf.sample(64), other.sample(64)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
