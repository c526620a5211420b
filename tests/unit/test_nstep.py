"""n-step transitions against hand-computed values: full windows, termination and truncation inside
the window (no bootstrap leak across episodes), and the end of the fragment."""

from __future__ import annotations

import numpy as np
import pytest

from kuberl.core.returns import nstep_transitions
from kuberl.core.sample_batch import Columns, SampleBatch

G = 0.5


def rollout(rewards: list[float], *, term: tuple[int, ...] = (), trunc: tuple[int, ...] = ()) -> SampleBatch:
    """One env; obs[t] = t, next_obs[t] = t + 1 except at episode ends (the final obs is 100 + t)."""
    T = len(rewards)
    t = np.arange(T, dtype=np.float32)
    next_obs = t + 1
    terms = np.zeros(T, dtype=bool)
    truncs = np.zeros(T, dtype=bool)
    terms[list(term)] = True
    truncs[list(trunc)] = True
    ends = terms | truncs
    next_obs[ends] = 100 + t[ends]
    return SampleBatch(
        {
            Columns.OBS: t[:, None, None],
            Columns.ACTIONS: np.arange(T, dtype=np.int64)[:, None] * 10,
            Columns.REWARDS: np.asarray(rewards, dtype=np.float32)[:, None],
            Columns.TERMINATEDS: terms[:, None],
            Columns.TRUNCATEDS: truncs[:, None],
            Columns.NEXT_OBS: next_obs[:, None, None],
        }
    )


def test_one_step_is_the_identity() -> None:
    b = rollout([1, 2, 3], term=(1,))
    out = nstep_transitions(b, n=1, gamma=G)
    np.testing.assert_allclose(out["rewards"], [1, 2, 3])
    np.testing.assert_allclose(out["next_obs"][:, 0], [1, 101, 3])
    np.testing.assert_array_equal(out["terminateds"], [False, True, False])
    np.testing.assert_allclose(out["discounts"], [G, G, G])
    np.testing.assert_array_equal(out["actions"], [0, 10, 20])


def test_full_windows_and_fragment_end() -> None:
    out = nstep_transitions(rollout([1, 2, 3, 4]), n=3, gamma=G)
    # t=0: 1 + .5·2 + .25·3 = 2.75 → s_3, γ³; t=1: 2 + 1.5 + 1 = 4.5 → s_4, γ³
    # t=2: fragment ends after 2 steps: 3 + 2 = 5 → s_4, γ²; t=3: 4 → s_4, γ
    np.testing.assert_allclose(out["rewards"], [2.75, 4.5, 5.0, 4.0])
    np.testing.assert_allclose(out["next_obs"][:, 0], [3, 4, 4, 4])
    np.testing.assert_allclose(out["discounts"], [G**3, G**3, G**2, G])
    assert not out["terminateds"].any()
    np.testing.assert_allclose(out["obs"][:, 0], [0, 1, 2, 3])


def test_termination_inside_window_stops_sum_and_bootstrap() -> None:
    out = nstep_transitions(rollout([1, 2, 3, 4, 5], term=(1,)), n=3, gamma=G)
    # t=0: 1 + .5·2, terminated at step 1 → no bootstrap; t=1: 2, terminated
    # t=2 starts a new episode: 3 + 2 + 1.25 = 6.25 → s_5 (fragment end after 3 steps)
    np.testing.assert_allclose(out["rewards"], [2.0, 2.0, 6.25, 4 + 2.5, 5.0])
    np.testing.assert_array_equal(out["terminateds"], [True, True, False, False, False])
    np.testing.assert_allclose(out["next_obs"][:, 0], [101, 101, 5, 5, 5])
    np.testing.assert_allclose(out["discounts"], [G**2, G, G**3, G**2, G])


def test_truncation_bootstraps_from_final_obs_without_leaking() -> None:
    out = nstep_transitions(rollout([1, 1, 1, 1], trunc=(1,)), n=3, gamma=G)
    # t=0: 1 + .5 then truncated: bootstrap from the final obs (101) with γ², not terminated;
    # rewards after the truncation (t=2, 3) never enter it.
    np.testing.assert_allclose(out["rewards"], [1.5, 1.0, 1.5, 1.0])
    np.testing.assert_array_equal(out["terminateds"], [False] * 4)
    np.testing.assert_allclose(out["next_obs"][:, 0], [101, 101, 4, 4])
    np.testing.assert_allclose(out["discounts"], [G**2, G, G**2, G])


def test_several_envs_are_independent_and_time_major() -> None:
    a, b = rollout([1, 2, 3], term=(0,)), rollout([4, 5, 6])
    both = SampleBatch({k: np.concatenate([a[k], b[k]], axis=1) for k in a})
    out = nstep_transitions(both, n=2, gamma=G)
    # flat order is time-major: (t0,e0), (t0,e1), (t1,e0), …
    np.testing.assert_allclose(out["rewards"], [1.0, 4 + 2.5, 2 + 1.5, 5 + 3.0, 3.0, 6.0])
    np.testing.assert_array_equal(out["terminateds"], [True, False, False, False, False, False])
    assert out["obs"].shape == (6, 1)
    assert out["rewards"].dtype == np.float32
    assert out["discounts"].dtype == np.float32


def test_targets_follow_the_documented_formula() -> None:
    out = nstep_transitions(rollout([1, 2, 3], term=(2,)), n=2, gamma=0.9)
    q_next = np.full(3, 10.0)
    target = out["rewards"] + out["discounts"] * (1 - out["terminateds"]) * q_next
    np.testing.assert_allclose(target, [1 + 0.9 * 2 + 0.81 * 10, 2 + 0.9 * 3, 3.0], rtol=1e-6)


def test_rejects_n_below_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        nstep_transitions(rollout([1.0]), n=0, gamma=G)


@pytest.mark.parametrize("reward_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("gamma", [0.99, 0.5, 1.0])
def test_one_step_shortcut_equals_the_general_path(reward_dtype: type, gamma: float) -> None:
    """n = 1 skips the n-step bookkeeping (kuberl.core.returns._one_step_transitions): every column,
    dtype and value equals what the general path computes, on several envs with episode ends."""
    from kuberl.core.returns import _nstep_transitions

    rng = np.random.default_rng(7)
    T, N = 9, 4
    obs = rng.normal(size=(T, N, 3)).astype(np.float32)
    batch = SampleBatch(
        {
            Columns.OBS: obs,
            Columns.ACTIONS: rng.normal(size=(T, N, 2)).astype(np.float32),
            Columns.REWARDS: rng.normal(size=(T, N)).astype(reward_dtype),
            Columns.TERMINATEDS: rng.random((T, N)) < 0.2,
            Columns.TRUNCATEDS: rng.random((T, N)) < 0.2,
            Columns.NEXT_OBS: obs + 1,
        }
    )
    fast = nstep_transitions(batch, n=1, gamma=gamma)
    general = _nstep_transitions(batch, n=1, gamma=gamma)
    assert fast.keys() == general.keys()
    for key in general:
        assert fast[key].dtype == general[key].dtype, key
        np.testing.assert_array_equal(fast[key], general[key], err_msg=key)
