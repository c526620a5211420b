"""V-trace against values computed by hand (clipping, episode ends inside the fragment, truncation
bootstrap) and against the on-policy limit, where it must reduce to n-step returns / GAE."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kuberl.core.returns import gae, vtrace


def col(*xs: float) -> np.ndarray:
    return np.asarray(xs, dtype=np.float32)[:, None]


def flags(*xs: int) -> np.ndarray:
    return np.asarray(xs, dtype=bool)[:, None]


def logps(*ratios: float) -> tuple[np.ndarray, np.ndarray]:
    """(behaviour, target) log-probs whose ratios π/μ are `ratios`."""
    behaviour = col(*([-1.0] * len(ratios)))
    return behaviour, behaviour + col(*(math.log(r) for r in ratios))


def test_off_policy_hand_values_with_clipping() -> None:
    # γ=0.5, ρ = [2, 0.5] → ρ̄ = c = [1, 0.5]
    b, t = logps(2.0, 0.5)
    r, v, nv = col(1, 2), col(0.5, 1.0), col(1.0, 2.0)
    no = flags(0, 0)
    out = vtrace(b, t, r, v, nv, no, no, gamma=0.5)
    # δ1 = 0.5·(2 + 0.5·2 − 1) = 1;  δ0 = 1·(1 + 0.5·1 − 0.5) = 1
    # v1 = 1 + 1 = 2;  v0 = 0.5 + δ0 + 0.5·c0·(v1 − V1) = 0.5 + 1 + 0.5 = 2
    np.testing.assert_allclose(out.vs[:, 0], [2.0, 2.0], rtol=1e-6)
    # A1 = min(1, 0.5)·(2 + 0.5·2 − 1) = 1;  A0 = min(1, 2)·(1 + 0.5·v1 − 0.5) = 1.5
    np.testing.assert_allclose(out.pg_advantages[:, 0], [1.5, 1.0], rtol=1e-6)
    np.testing.assert_allclose(out.rhos[:, 0], [2.0, 0.5], rtol=1e-6)

    unclipped_pg = vtrace(b, t, r, v, nv, no, no, gamma=0.5, clip_pg_rho_threshold=None)
    np.testing.assert_allclose(unclipped_pg.pg_advantages[:, 0], [3.0, 1.0], rtol=1e-6)
    unclipped_rho = vtrace(b, t, r, v, nv, no, no, gamma=0.5, clip_rho_threshold=None)
    # δ0 = 2·1 = 2 → v0 = 0.5 + 2 + 0.5 = 3; v1 is unchanged (ρ1 < 1)
    np.testing.assert_allclose(unclipped_rho.vs[:, 0], [3.0, 2.0], rtol=1e-6)


def test_termination_inside_fragment_neither_bootstraps_nor_leaks() -> None:
    b, t = logps(1.0, 1.0, 1.0)
    r, v = col(1, 1, 1), col(0, 0, 0)
    nv = col(99.0, 0.0, 4.0)  # nv[0] would be V(next episode's first obs): must be ignored
    out = vtrace(b, t, r, v, nv, flags(1, 0, 0), flags(0, 0, 0), gamma=0.5)
    # v2 = 1 + 0.5·4 = 3;  v1 = 1 + 0.5·0 + 0.5·(3 − 0) = 2.5;  v0 = 1 (terminal)
    np.testing.assert_allclose(out.vs[:, 0], [1.0, 2.5, 3.0], rtol=1e-6)
    np.testing.assert_allclose(out.pg_advantages[:, 0], [1.0, 1.0 + 0.5 * 3.0, 3.0], rtol=1e-6)


def test_truncation_bootstraps_from_final_value_but_cuts_the_recursion() -> None:
    b, t = logps(0.5, 1.0, 1.0)
    r, v = col(1, 1, 1), col(0, 0, 0)
    nv = col(10.0, 0.0, 4.0)  # nv[0] = V(final obs) of the truncated episode
    out = vtrace(b, t, r, v, nv, flags(0, 0, 0), flags(1, 0, 0), gamma=0.5)
    # step 0: ρ̄ = 0.5 → v0 = 0.5·(1 + 0.5·10) = 3, nothing from step 1 mixed in
    np.testing.assert_allclose(out.vs[:, 0], [3.0, 2.5, 3.0], rtol=1e-6)
    # A0 = 0.5·(1 + 0.5·V(final obs)) = 3: the bootstrap, not v1
    np.testing.assert_allclose(out.pg_advantages[0, 0], 3.0, rtol=1e-6)


def mc_returns(
    r: np.ndarray, nv: np.ndarray, term: np.ndarray, trunc: np.ndarray, *, gamma: float
) -> np.ndarray:
    """Discounted rewards to the episode end, bootstrapped with V at truncations and after the fragment."""
    T, N = r.shape
    out = np.zeros((T, N))
    for j in range(N):
        for t in range(T):
            g, disc, k = 0.0, 1.0, t
            while True:
                g += disc * r[k, j]
                disc *= gamma
                if term[k, j]:
                    break
                if trunc[k, j] or k == T - 1:
                    g += disc * nv[k, j]
                    break
                k += 1
            out[t, j] = g
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_on_policy_limit_is_bootstrapped_n_step_return(seed: int) -> None:
    rng = np.random.default_rng(seed)
    T, N = 12, 4
    r = rng.normal(size=(T, N)).astype(np.float32)
    v = rng.normal(size=(T, N)).astype(np.float32)
    nv = np.empty_like(v)
    nv[:-1] = v[1:]
    nv[-1] = rng.normal(size=N)
    term = rng.random((T, N)) < 0.15
    trunc = (rng.random((T, N)) < 0.15) & ~term
    nv[trunc] = rng.normal(size=int(trunc.sum()))  # V(final obs) at truncations
    logp = rng.normal(size=(T, N)).astype(np.float32)
    out = vtrace(logp, logp, r, v, nv, term, trunc, gamma=0.9)
    returns = mc_returns(r, nv, term, trunc, gamma=0.9)
    _, gae1_targets = gae(r, v, nv, term, trunc, gamma=0.9, lambda_=1.0)
    np.testing.assert_allclose(returns, gae1_targets, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out.vs.numpy(), returns, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out.pg_advantages.numpy(), returns - v, rtol=1e-5, atol=1e-5)
    # With c = λ the V-trace targets are the GAE(λ) value targets.
    out_l = vtrace(logp, logp, r, v, nv, term, trunc, gamma=0.9, lambda_=0.8)
    _, targets = gae(r, v, nv, term, trunc, gamma=0.9, lambda_=0.8)
    np.testing.assert_allclose(out_l.vs.numpy(), targets, rtol=1e-5, atol=1e-5)


def test_envs_are_independent_columns_and_torch_inputs_work() -> None:
    rng = np.random.default_rng(3)
    T, N = 6, 3
    arrs = [torch.as_tensor(rng.normal(size=(T, N)), dtype=torch.float32) for _ in range(5)]
    b, t, r, v, nv = arrs
    term = torch.as_tensor(rng.random((T, N)) < 0.2)
    trunc = torch.as_tensor(rng.random((T, N)) < 0.2)
    full = vtrace(b, t, r, v, nv, term, trunc, gamma=0.99)
    for j in range(N):
        s = slice(j, j + 1)
        one = vtrace(b[:, s], t[:, s], r[:, s], v[:, s], nv[:, s], term[:, s], trunc[:, s], gamma=0.99)
        torch.testing.assert_close(full.vs[:, s], one.vs)
        torch.testing.assert_close(full.pg_advantages[:, s], one.pg_advantages)


def test_targets_carry_no_gradient() -> None:
    v = torch.zeros(3, 1, requires_grad=True)
    logp = torch.zeros(3, 1, requires_grad=True)
    out = vtrace(
        logp, logp, torch.ones(3, 1), v, torch.zeros(3, 1), flags(0, 0, 0), flags(0, 0, 0), gamma=0.9
    )
    assert not out.vs.requires_grad
    assert not out.pg_advantages.requires_grad
