"""EnvRunner in-process: batch layout, truncation bootstrap values, seeding, crashed sub-env restart."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from kuberl.core.env_runner import EnvRunner, RunnerConfig
from kuberl.core.models import build_model, load_numpy_weights, weights_to_numpy
from kuberl.core.sample_batch import Columns
from kuberl.spec import ModelConfig


def runner(env: str = "CartPole-v1", env_config: dict | None = None, **kw: object) -> EnvRunner:
    cfg = RunnerConfig(
        env=env, env_config=env_config or {}, num_envs=4, rollout_length=50, model=ModelConfig(), seed=3, **kw
    )  # type: ignore[arg-type]
    return EnvRunner(cfg)


def test_sample_shapes_and_episode_accounting() -> None:
    r = runner()
    out = r.sample()
    b = out.batch
    assert b[Columns.OBS].shape == (50, 4, 4)
    assert b[Columns.ACTIONS].shape == (50, 4)
    assert b.env_steps == 200
    assert len(out.episode_returns) == int(np.logical_or(b[Columns.TERMINATEDS], b[Columns.TRUNCATEDS]).sum())
    # CartPole gives +1 per step, so an episode's return equals its length
    assert out.episode_returns == [float(x) for x in out.episode_lengths]


def test_next_values_bootstrap_from_final_obs_on_truncation() -> None:
    r = runner("tests.envs:make_chain", {"length": 50, "max_steps": 7})
    out = r.sample()
    b = out.batch
    trunc = b[Columns.TRUNCATEDS]
    assert trunc.any()
    assert not b[Columns.TERMINATEDS].any()
    # For non-final steps, V(s') is the next step's prediction unless the episode was cut there.
    t, i = np.argwhere(trunc)[0]
    assert b[Columns.NEXT_VF_PREDS][t, i] != b[Columns.VF_PREDS][t + 1, i]  # next step is a fresh episode
    ok = ~trunc[:-1]
    np.testing.assert_array_equal(b[Columns.NEXT_VF_PREDS][:-1][ok], b[Columns.VF_PREDS][1:][ok])
    # V(final_obs): the chain after 7 steps from the start sits at a position the reset obs never shows.
    with torch.inference_mode():
        assert torch.isfinite(torch.tensor(b[Columns.NEXT_VF_PREDS])).all()


def test_same_seed_same_rollout_and_distinct_runner_streams() -> None:
    a, b = runner(), runner()
    np.testing.assert_array_equal(a.sample().batch[Columns.OBS], b.sample().batch[Columns.OBS])
    c = EnvRunner(
        RunnerConfig(
            env="CartPole-v1",
            env_config={},
            num_envs=4,
            rollout_length=50,
            model=ModelConfig(),
            seed=3,
            worker_index=1,
        )
    )
    assert not np.array_equal(runner().sample().batch[Columns.OBS][0], c.sample().batch[Columns.OBS][0])


def test_set_state_changes_the_policy() -> None:
    a, b = runner(), runner()
    w = weights_to_numpy(b.module)
    w = {k: v + 1.0 for k, v in w.items()}
    a.set_state(w)
    for k, v in weights_to_numpy(a.module).items():
        np.testing.assert_allclose(v, w[k])


def test_crashing_sub_environment_is_restarted_and_episode_truncated() -> None:
    r = runner("tests.envs:make_chain", {"length": 50, "max_steps": 1000, "crash_every": 30})
    out = r.sample()  # 50 steps per sub-env: each crashes once at its 30th step
    assert out.env_restarts == 4
    assert out.batch[Columns.TRUNCATEDS][29].all()
    assert not out.batch[Columns.TERMINATEDS].any()
    assert r.sample().batch.env_steps == 200  # and it keeps sampling


@pytest.mark.parametrize(
    ("model", "action_space"),
    [
        ({}, gym.spaces.Discrete(2)),
        ({"vf_share_layers": True}, gym.spaces.Discrete(3)),
        ({"free_log_std": True, "fcnet_activation": "relu"}, gym.spaces.Box(-1, 1, (2,))),
        ({"fcnet_hiddens": [32], "fcnet_activation": "elu"}, gym.spaces.Box(-1, 1, (3,))),
    ],
)
def test_inference_forward_equals_the_module_and_follows_weight_updates(
    model: dict[str, object], action_space: gym.Space
) -> None:
    """The runners' forward (ActorCritic.inference_forward, no nn.Module call per layer) is the module's
    forward bit for bit, also after weights are loaded in place as the runners receive them."""
    obs_space = gym.spaces.Box(-1, 1, (4,))
    module = build_model(obs_space, action_space, ModelConfig(**model))  # type: ignore[arg-type]
    forward = module.inference_forward()  # type: ignore[operator]
    other = build_model(obs_space, action_space, ModelConfig(**model))  # type: ignore[arg-type]
    x = torch.randn(16, 4, generator=torch.Generator().manual_seed(0))
    for weights in (None, weights_to_numpy(other)):
        if weights is not None:
            load_numpy_weights(module, weights)
        with torch.inference_mode():
            expected, got = module(x), forward(x)
        assert all(torch.equal(e, g) for e, g in zip(expected, got, strict=True))
    assert torch.equal(got[0], other(x)[0].detach())


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_a_copied_policy_acts_with_its_own_weights(how: str) -> None:
    """The policy's fast forward is a closure over its module's parameters: a deep copy (the evaluation
    tests replay a copied inference policy) or an unpickled policy must act with the copy's weights, not
    the original's."""
    import copy
    import pickle

    from kuberl.core.policy import ActorCriticPolicy

    obs_space, action_space = gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2)
    policy = ActorCriticPolicy(obs_space, action_space, ModelConfig(), {})
    clone = copy.deepcopy(policy) if how == "deepcopy" else pickle.loads(pickle.dumps(policy))
    other = build_model(obs_space, action_space, ModelConfig())
    load_numpy_weights(clone.module, weights_to_numpy(other))
    x = torch.randn(16, 4, generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        got = clone.act(x, explore=False, generator=gen)[Columns.ACTION_DIST_INPUTS]
        assert torch.equal(got, other(x)[0])
        assert not torch.equal(got, policy.act(x, explore=False, generator=gen)[Columns.ACTION_DIST_INPUTS])


def _wrappers(env: gym.Env) -> list[str]:
    names = []
    while isinstance(env, gym.Wrapper):
        names.append(type(env).__name__)
        env = env.env
    return names


def test_env_checker_is_left_out_only_for_gymnasium_s_own_environments() -> None:
    from kuberl.core.env_factory import env_creator

    # Gymnasium's CartPole: no PassiveEnvChecker in every sub-env's step chain (Gymnasium tests its own envs).
    assert "PassiveEnvChecker" not in _wrappers(env_creator("CartPole-v1", {})())
    # The user's envConfig still decides.
    assert "PassiveEnvChecker" in _wrappers(env_creator("CartPole-v1", {"disable_env_checker": False})())
    # An environment registered by someone else keeps Gymnasium's checker.
    if "KuberlTestChain-v0" not in gym.registry:
        gym.register("KuberlTestChain-v0", entry_point="tests.envs:ChainEnv")
    assert "PassiveEnvChecker" in _wrappers(env_creator("KuberlTestChain-v0", {})())
    # Either way the runner's rollouts are the same: the checker only checks.
    torch.manual_seed(0)  # the same initial weights
    a = runner().sample().batch
    torch.manual_seed(0)
    b = runner(env_config={"disable_env_checker": False}).sample().batch
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
