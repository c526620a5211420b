"""ES and the evolution machinery it shares with ARS (kuberl.algorithms.families.evolution): rank shaping, the antithetic
gradient estimate, seeds → identical noise in the driver and in runner actors, config refusals, and
checkpoint round trips."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from kuberl.algorithms.es import ES
from kuberl.algorithms.families.evolution import antithetic_gradient, centered_ranks, flat_parameters, noise
from kuberl.build import build_algorithm
from kuberl.spec import SpecError, parse_job
from tests.fixtures.jobs import job_doc

SMALL = {"num_rollouts": 4, "noise_stdev": 0.05, "stepsize": 0.03, "model": {"fcnet_hiddens": [8]}}


def build_es(doc: dict[str, Any]) -> ES:
    algo = build_algorithm(doc)
    assert isinstance(algo, ES)
    return algo


def es_job(tmp_path: Path, *, runners: int = 0, seed: int = 0, **config: Any) -> dict[str, Any]:
    return job_doc(
        "ES", "CartPole-v1", seed=seed, run_dir=tmp_path, config={**SMALL, **config}, runners=runners
    )


def test_centered_ranks_are_evenly_spaced_in_minus_half_to_half() -> None:
    np.testing.assert_allclose(centered_ranks(np.array([3.0, -10.0, 500.0, 4.0])), [-1 / 6, -0.5, 0.5, 1 / 6])


def test_centered_ranks_ignore_the_scale_of_the_returns_and_keep_the_shape() -> None:
    x = np.array([[1.0, 2.0], [30.0, -4.0]])
    ranks = centered_ranks(x)
    assert ranks.shape == (2, 2)
    np.testing.assert_allclose(ranks, centered_ranks(np.exp(x)))  # any monotone transform: same ranks
    assert ranks.sum() == pytest.approx(0.0)


def test_noise_is_a_function_of_the_seed_alone() -> None:
    np.testing.assert_array_equal(noise(123, 50), noise(123, 50))
    assert not np.allclose(noise(123, 50), noise(124, 50))
    assert noise(7, 10_000).std() == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize("shaped", [False, True])
def test_antithetic_gradient_points_downhill_on_a_quadratic(shaped: bool) -> None:
    # Fitness F(θ) = −|θ − c|²: the ascent direction at θ is 2(c − θ), i.e. downhill on the loss |θ − c|².
    rng = np.random.default_rng(0)
    dim, sigma = 20, 0.1
    c = rng.standard_normal(dim)
    theta = np.zeros(dim)
    seeds = rng.integers(0, 2**31 - 1, size=200)
    plus = np.array([-np.sum((theta + sigma * noise(int(s), dim) - c) ** 2) for s in seeds])
    minus = np.array([-np.sum((theta - sigma * noise(int(s), dim) - c) ** 2) for s in seeds])
    if shaped:
        ranks = centered_ranks(np.stack([plus, minus], axis=1))
        weights = ranks[:, 0] - ranks[:, 1]
    else:
        weights = plus - minus
    g = antithetic_gradient(seeds, weights, dim, sigma)
    true = 2 * (c - theta)
    cosine = g @ true / (np.linalg.norm(g) * np.linalg.norm(true))
    assert cosine > 0.7, cosine
    if not shaped:  # unshaped, the estimator is unbiased for a quadratic: magnitude matches too
        assert np.linalg.norm(g) == pytest.approx(np.linalg.norm(true), rel=0.3)
    # A small step along the estimate lowers the loss.
    assert np.sum((theta + 0.01 * g - c) ** 2) < np.sum((theta - c) ** 2)


@pytest.mark.usefixtures("ray_session")
def test_runner_actors_regenerate_the_drivers_noise(tmp_path: Path) -> None:
    # A runner actor evaluating (seed, +1) plays the same episode as θ + σε(seed) built in the driver and
    # sent as plain weights: the actor regenerated exactly the driver's ε from the seed.
    import ray

    algo = build_es(es_job(tmp_path, runners=1))
    try:
        sigma, seed = 0.5, 4242
        actor = algo.runners.actors[0]
        assert np.array_equal(ray.get(ray.remote(noise).remote(seed, 97)), noise(seed, 97))
        perturbed = ray.get(
            actor.evaluate_candidates.remote([(seed, 1.0), (seed, -1.0)], sigma=sigma, episodes=2)
        )
        theta = algo.theta.detach().clone()
        for sign, expected in ((1.0, perturbed.returns[0]), (-1.0, perturbed.returns[1])):
            with torch.no_grad():
                algo.theta.copy_(theta + sign * sigma * torch.from_numpy(noise(seed, theta.numel())).double())
            algo.sync_weights()
            direct = ray.get(actor.evaluate_candidates.remote([(seed, 0.0)], sigma=sigma, episodes=2))
            assert direct.returns[0] == expected
        assert perturbed.env_steps == int(perturbed.lengths.sum() * 2)
    finally:
        algo.stop()


def test_an_iteration_reports_returns_and_moves_theta(tmp_path: Path) -> None:
    algo = build_es(es_job(tmp_path, eval_prob=1.0))
    try:
        before = flat_parameters(algo.module)
        result = algo.train()
        stats = result["learner"]["default_policy"]
        # 4 directions × 2 signs + θ itself, one episode each.
        assert result["episodes_this_iter"] == 9
        assert result["timesteps_total"] == sum(algo.lengths)
        assert {"perturbed_return_mean", "theta_return_mean", "grad_norm", "theta_norm"} <= set(stats)
        assert not torch.equal(before, flat_parameters(algo.module))
        assert algo.compute_actions(np.zeros(4, dtype=np.float32)) in (0, 1)
        assert algo.evaluate(2)["episodes"] == 2
    finally:
        algo.stop()


def test_checkpoint_restores_theta_adam_filter_and_rng(tmp_path: Path) -> None:
    a = build_es(es_job(tmp_path / "a"))
    b = build_es(es_job(tmp_path / "b"))
    try:
        for _ in range(2):
            a.train()
        b.train()  # b's θ, Adam moments, filter and RNG now differ from a's: restore must replace them all
        uri = a.save(str(tmp_path / "ckpt"))
        b.restore(uri)
        assert torch.equal(a.theta, b.theta)
        assert b.obs_filter is not None
        assert a.obs_filter is not None
        assert b.obs_filter.count == a.obs_filter.count
        ra, rb = a.train(), b.train()
        assert ra["timesteps_total"] == rb["timesteps_total"]
        assert torch.equal(a.theta, b.theta)  # same seeds drawn, same episodes, same Adam moments
    finally:
        a.stop()
        b.stop()


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"config": {"lr": 0.1}}, "config", "set stepsize instead"),
        ({"config": {"gamma": 0.9}}, "config", "undiscounted"),
        ({"config": {"model": {"use_lstm": True}}}, "config", "recurrent"),
        ({"config": {"model": {"custom_model": "m:M"}}}, "config", "customModel"),
        ({"resources": {"learners": 2}}, "resources.learners", "has no gradient learner"),
        ({"multiAgent": {"policies": {"p": {}}}}, "multiAgent", "does not run multi-agent"),
        ({"output": {"uri": "/tmp/x"}}, "output", "no transitions to record"),
    ],
)
def test_unsupported_settings_are_refused_with_a_reason(
    tmp_path: Path, change: dict[str, Any], field: str, reason: str
) -> None:
    doc = es_job(tmp_path)
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(doc["spec"].get(key), dict):
            doc["spec"][key] = {**doc["spec"][key], **value}
        else:
            doc["spec"][key] = value
    with pytest.raises(SpecError) as err:
        parse_job(doc)
    assert field in str(err.value), str(err.value)
    assert reason in str(err.value), str(err.value)


@pytest.mark.usefixtures("ray_session")
def test_results_do_not_depend_on_the_number_of_runners_and_survive_a_dead_runner(tmp_path: Path) -> None:
    # Env seeds derive from direction seeds, so splitting the candidates over 2 actors instead of
    # playing them in the driver changes nothing; a killed actor is recreated and asked again.
    local = build_es(es_job(tmp_path / "local"))
    remote = build_es(es_job(tmp_path / "remote", runners=2))
    try:
        remote.runners.kill_runner_for_test(1)
        a, b = local.train(), remote.train()
        assert remote.runners.restarts == 1
        assert a["timesteps_total"] == b["timesteps_total"]
        assert torch.equal(local.theta, remote.theta)
    finally:
        local.stop()
        remote.stop()


def test_continuous_actions_are_the_clipped_mean(tmp_path: Path) -> None:
    doc = job_doc("ES", "Pendulum-v1", seed=0, run_dir=tmp_path, config=SMALL)
    algo = build_es(doc)
    try:
        result = algo.train()
        assert result["episodes_this_iter"] == 8
        assert result["timesteps_total"] == 8 * 200  # Pendulum's time limit: every episode is truncated
        actions = algo.compute_actions(np.ones((3, 3), dtype=np.float32) * 50)
        assert actions.shape == (3, 1)
        assert np.all(np.abs(actions) <= 2.0)
    finally:
        algo.stop()
