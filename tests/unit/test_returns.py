"""GAE against values computed by hand, including truncation bootstrap and episode boundaries."""

from __future__ import annotations

import numpy as np
import pytest

from kuberl.core.returns import discounted_returns, gae


def col(*xs: float) -> np.ndarray:
    return np.asarray(xs, dtype=np.float32)[:, None]


def test_gae_single_env_no_done_matches_hand_values() -> None:
    # gamma=0.5, lambda=0.5 → decay 0.25
    r, v, nv = col(1, 2, 3), col(0.5, 1.0, 1.5), col(1.0, 1.5, 2.0)
    f = np.zeros_like(r, dtype=bool)
    adv, targets = gae(r, v, nv, f, f, gamma=0.5, lambda_=0.5)
    d = [1 + 0.5 * 1.0 - 0.5, 2 + 0.5 * 1.5 - 1.0, 3 + 0.5 * 2.0 - 1.5]  # 1.0, 1.75, 2.5
    expected = [d[0] + 0.25 * (d[1] + 0.25 * d[2]), d[1] + 0.25 * d[2], d[2]]
    np.testing.assert_allclose(adv[:, 0], expected, rtol=1e-6)
    np.testing.assert_allclose(targets[:, 0], np.asarray(expected) + v[:, 0], rtol=1e-6)


def test_termination_zeroes_bootstrap_and_cuts_recursion() -> None:
    r, v, nv = col(1, 1), col(0.0, 0.0), col(10.0, 10.0)
    term = col(1, 0).astype(bool)
    trunc = np.zeros_like(term)
    adv, _ = gae(r, v, nv, term, trunc, gamma=0.9, lambda_=1.0)
    # step 0 ends the episode: no bootstrap, no leak of step 1's advantage into it
    assert adv[0, 0] == pytest.approx(1.0)
    assert adv[1, 0] == pytest.approx(1.0 + 0.9 * 10.0)


def test_truncation_bootstraps_from_final_value_but_cuts_recursion() -> None:
    r, v = col(1, 1), col(0.0, 0.0)
    nv = col(5.0, 10.0)  # nv[0] = V(final_obs) of the truncated episode
    term = np.zeros((2, 1), dtype=bool)
    trunc = col(1, 0).astype(bool)
    adv, _ = gae(r, v, nv, term, trunc, gamma=0.9, lambda_=0.95)
    assert adv[0, 0] == pytest.approx(1.0 + 0.9 * 5.0)  # bootstrapped, but not mixed with step 1
    assert adv[1, 0] == pytest.approx(1.0 + 0.9 * 10.0)


def test_envs_are_independent_columns() -> None:
    rng = np.random.default_rng(0)
    r, v, nv = (rng.normal(size=(5, 3)).astype(np.float32) for _ in range(3))
    term = rng.random((5, 3)) < 0.2
    trunc = rng.random((5, 3)) < 0.2
    adv, _ = gae(r, v, nv, term, trunc, gamma=0.99, lambda_=0.9)
    for j in range(3):
        a_j, _ = gae(
            r[:, j : j + 1],
            v[:, j : j + 1],
            nv[:, j : j + 1],
            term[:, j : j + 1],
            trunc[:, j : j + 1],
            gamma=0.99,
            lambda_=0.9,
        )
        np.testing.assert_allclose(adv[:, j], a_j[:, 0], rtol=1e-6)


def test_discounted_returns_is_lambda_one_monte_carlo() -> None:
    r, nv = col(1, 1, 1), col(0, 0, 4)
    f = np.zeros((3, 1), dtype=bool)
    ret = discounted_returns(r, nv, f, f, gamma=0.5)
    np.testing.assert_allclose(
        ret[:, 0], [1 + 0.5 * (1 + 0.5 * (1 + 0.5 * 4)), 1 + 0.5 * (1 + 0.5 * 4), 1 + 0.5 * 4]
    )


def test_discounted_returns_ignore_next_values_inside_an_episode() -> None:
    # V(s1) = 7 sits in next_values[0]; it must not leak into the return of step 0.
    r = col(1, 1)
    nv = col(7, 3)
    f = np.zeros((2, 1), dtype=bool)
    ret = discounted_returns(r, nv, f, f, gamma=0.5)
    np.testing.assert_allclose(ret[:, 0], [1 + 0.5 * (1 + 0.5 * 3), 1 + 0.5 * 3])
