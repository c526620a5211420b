"""Multi-agent pieces: spec validation, agent → policy mapping, action masks, and the runner's layout."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from kuberl.core.env_factory import EnvError
from kuberl.core.multi_agent.env import make_agent_env
from kuberl.core.multi_agent.mapping import EpisodeInfo, PolicyMapper, SelfPlaySeats, policy_spaces
from kuberl.core.multi_agent.masking import (
    ILLEGAL_LOGIT,
    MaskedActorCritic,
    RandomPolicy,
    masked_model_config,
)
from kuberl.core.multi_agent.runner import MultiAgentEnvRunner, MultiAgentRunnerConfig, PolicySlot
from kuberl.core.policy import ActorCriticPolicy
from kuberl.core.sample_batch import Columns
from kuberl.spec import ModelConfig, SpecError, parse_job

AC_POLICY = ActorCriticPolicy


def job(multi_agent: dict[str, Any], **spec: Any) -> Any:
    return parse_job(
        {
            "metadata": {"name": "ma"},
            "spec": {
                "algorithm": "PPO",
                "env": "tests.ma_envs:make_relay",
                "multiAgent": multi_agent,
                **spec,
            },
        }
    )


# -- spec --------------------------------------------------------------------------------------------


def test_default_is_one_shared_trained_policy() -> None:
    ma = job({}).spec.multi_agent
    assert list(ma.policies) == ["default_policy"]
    assert ma.trained_policies() == ["default_policy"]


@pytest.mark.parametrize(
    ("multi_agent", "message"),
    [
        (
            {"policies": {"a": {}, "b": {}}, "policyMapping": [{"agentPattern": "x*", "policy": "c"}]},
            "policyMapping[0].policy: 'c' is not a policy (known: a, b)",
        ),
        ({"policies": {"a": {}, "b": {}}}, "several policies need policyMapping rules"),
        ({"policies": {"a": {}}, "policiesToTrain": ["z"]}, "policiesToTrain: 'z' is not a policy"),
        ({"policies": {"a": {"trainable": False}}}, "no policy is trained"),
        ({"policies": {"a": {"random": True}}}, "a random policy cannot be trainable"),
        ({"policies": {"bad name": {}}}, "policy name 'bad name'"),
        (
            {"policies": {"a": {}}, "policyMapping": [{"agentPattern": "re:[", "policy": "a"}]},
            "not a valid regular expression",
        ),
        (
            {
                "policies": {"a": {}, "b": {}},
                "policyMapping": [{"agentPattern": "*", "policy": "a"}],
                "policyMappingFunction": "m:f",
            },
            "not both",
        ),
        (
            {"policies": {"main": {}, "opp": {}}, "selfPlay": {"policy": "main", "opponentPolicy": "opp"}},
            "must be a plain frozen policy",
        ),
        (
            {
                "policies": {"main": {}, "opp": {"trainable": False}},
                "selfPlay": {"policy": "x", "opponentPolicy": "opp"},
            },
            "selfPlay.policy: 'x' is not a policy",
        ),
        ({"selfPlay": {"policy": "main", "opponentPolicy": "opp", "poolSize": 0}}, "poolSize"),
    ],
)
def test_spec_errors_name_the_field(multi_agent: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as err:
        job(multi_agent)
    assert err.value.first_path.startswith("spec.multiAgent")
    assert message in str(err.value)


def test_camel_and_snake_case() -> None:
    ma = job(
        {
            "policies": {"main": {}, "opp": {"trainable": False}},
            "self_play": {"policy": "main", "opponent_policy": "opp", "snapshotEveryIterations": 3},
        }
    ).spec.multi_agent
    assert ma.self_play.snapshot_every_iterations == 3
    assert job({}).to_wire()["spec"]["multiAgent"]["policies"] == {
        "default_policy": {"trainable": True, "random": False}
    }


def test_unsupported_algorithm_is_a_spec_error(tmp_path: Any) -> None:
    from kuberl.build import build_algorithm

    doc = job({}).to_wire()
    doc["spec"].update(algorithm="IMPALA", runDir=str(tmp_path))
    doc["spec"].pop("config")
    with pytest.raises(SpecError, match="IMPALA does not run multi-agent"):
        build_algorithm(doc)


# -- mapping -----------------------------------------------------------------------------------------


def test_rules_first_match_wins_glob_and_regex() -> None:
    m = PolicyMapper(
        ["left", "right", "other"],
        rules=[("agent_0", "left"), ("re:agent_[0-9]+", "right"), ("*", "other")],
    )
    ep = EpisodeInfo(id=1)
    assert [m(a, ep) for a in ("agent_0", "agent_1", "agent_12", "late")] == [
        "left",
        "right",
        "right",
        "other",
    ]


def test_no_matching_rule_is_an_error() -> None:
    m = PolicyMapper(["a"], rules=[("player_*", "a")])
    with pytest.raises(ValueError, match="'late' matches no policyMapping rule"):
        m("late", EpisodeInfo(id=1))


def test_mapping_function_gets_the_episode() -> None:
    m = PolicyMapper(["left", "right"], function="tests.ma_envs:by_parity")
    assert m("agent_0", EpisodeInfo(id=2)) == "left"
    assert m("agent_0", EpisodeInfo(id=3)) == "right"
    bad = PolicyMapper(["only"], function="tests.ma_envs:by_parity")
    with pytest.raises(ValueError, match=r"returned 'left'.*not a policy"):
        bad("agent_0", EpisodeInfo(id=2))


def test_self_play_seats() -> None:
    m = PolicyMapper(["main", "opp"], self_play=SelfPlaySeats("main", "opp"))
    assert m("player_1", EpisodeInfo(id=1), seat="player_1") == "main"
    assert m("player_2", EpisodeInfo(id=1), seat="player_1") == "opp"


def test_policy_spaces_need_agreement() -> None:
    box, disc = gym.spaces.Box(0, 1, (2,)), gym.spaces.Discrete(2)
    other = gym.spaces.Box(0, 1, (3,))
    agents = {"a": (box, disc), "b": (other, disc)}
    shared = PolicyMapper(["p"])
    with pytest.raises(ValueError, match="different spaces"):
        policy_spaces(agents, shared)
    separate = PolicyMapper(["p", "q"], rules=[("a", "p"), ("b", "q")])
    assert policy_spaces(agents, separate) == {"p": (box, disc), "q": (other, disc)}


# -- envs and masks ----------------------------------------------------------------------------------


def test_env_errors() -> None:
    with pytest.raises(EnvError, match="not in PettingZoo's registry"):
        make_agent_env("classic/nope-v1", {})
    with pytest.raises(EnvError, match="not a PettingZoo ParallelEnv or AECEnv"):
        make_agent_env("tests.ma_envs:not_a_pettingzoo_env", {})


def tictactoe_spaces() -> tuple[gym.Space[Any], gym.Space[Any]]:
    env = make_agent_env("classic/tictactoe-v3", {})
    return env.observation_space("player_1"), env.action_space("player_1")


def test_masked_actor_critic_masks_illegal_logits() -> None:
    obs_space, act_space = tictactoe_spaces()
    cfg = masked_model_config(ModelConfig())
    model = MaskedActorCritic(obs_space, act_space, dict(cfg.custom_model_config))
    mask = np.zeros((2, 9), dtype=np.float32)
    mask[0, [1, 4]] = 1
    mask[1, :] = 1
    # Flat layout: action_mask (9) first, then the 3x3x2 board (Dict keys sorted).
    flat = torch.from_numpy(np.concatenate([mask, np.zeros((2, 18), np.float32)], axis=1))
    logits, values = model(flat)
    assert values.shape == (2,)
    assert torch.all(logits[0, [0, 2, 3, 5, 6, 7, 8]] == ILLEGAL_LOGIT)
    assert torch.all(logits[0, [1, 4]] > ILLEGAL_LOGIT)
    assert torch.all(logits[1] > ILLEGAL_LOGIT)
    probs = torch.softmax(logits, dim=-1)
    assert float(probs[0, [1, 4]].sum().detach()) == pytest.approx(1.0)


def test_random_policy_plays_only_legal_moves() -> None:
    obs_space, act_space = tictactoe_spaces()
    policy = RandomPolicy(obs_space, act_space, ModelConfig(), {})
    mask = np.zeros((500, 9), dtype=np.float32)
    mask[:, [2, 7]] = 1
    flat = torch.from_numpy(np.concatenate([mask, np.zeros((500, 18), np.float32)], axis=1))
    actions = policy.act(flat, explore=True, generator=torch.Generator().manual_seed(0))[Columns.ACTIONS]
    assert set(actions.tolist()) == {2, 7}


# -- runner ------------------------------------------------------------------------------------------


def relay_runner(*, store_next_obs: bool = False) -> MultiAgentEnvRunner:
    box = gym.spaces.Box(0.0, 10.0, shape=(3,), dtype=np.float32)
    slot = PolicySlot(box, gym.spaces.Discrete(2), AC_POLICY, ModelConfig(), store_next_obs=store_next_obs)
    return MultiAgentEnvRunner(
        MultiAgentRunnerConfig(
            env="tests.ma_envs:make_relay", env_config={}, num_envs=1, policies={"shared": slot}, seed=0
        )
    )


def test_runner_layout_with_appearing_and_ending_agents() -> None:
    """Relay: `a` acts at env steps 0-3 (terminated), `b` at 2-5 (truncated); see tests/ma_envs.py."""
    runner = relay_runner(store_next_obs=True)
    policy = runner.policies["shared"]

    first = runner.sample(3)
    batch = first.rollouts["shared"].batch
    assert batch[Columns.OBS].shape == (4, 1, 3)  # a's three steps, then b's first
    obs = batch[Columns.OBS][:, 0]
    np.testing.assert_array_equal(obs, [[0, 1, 0], [1, 1, 0], [2, 1, 0], [2, 0, 1]])
    np.testing.assert_array_equal(batch[Columns.REWARDS][:, 0], [1, 1, 1, 10])
    np.testing.assert_array_equal(batch[Columns.TERMINATEDS][:, 0], [False] * 4)
    np.testing.assert_array_equal(batch[Columns.TRUNCATEDS][:, 0], [False, False, True, True])  # the cut
    next_obs = batch[Columns.NEXT_OBS][:, 0]
    np.testing.assert_array_equal(next_obs, [[1, 1, 0], [2, 1, 0], [3, 1, 0], [3, 0, 1]])
    vf, next_vf = batch[Columns.VF_PREDS][:, 0], batch[Columns.NEXT_VF_PREDS][:, 0]
    np.testing.assert_allclose(next_vf[:2], vf[1:3])  # inside a's fragment: the next step's V
    with torch.inference_mode():
        boot = policy.value(torch.from_numpy(next_obs[2:]))
    assert boot is not None
    np.testing.assert_allclose(next_vf[2:], boot.numpy(), rtol=1e-6)  # at the cut: V(s')
    assert first.env_steps == 3
    assert first.episode_returns == []

    second = runner.sample(3)
    batch = second.rollouts["shared"].batch
    np.testing.assert_array_equal(batch[Columns.OBS][:, 0], [[3, 1, 0], [3, 0, 1], [4, 0, 1], [5, 0, 1]])
    np.testing.assert_array_equal(batch[Columns.REWARDS][:, 0], [1, 10, 10, 10])
    np.testing.assert_array_equal(batch[Columns.TERMINATEDS][:, 0], [True, False, False, False])
    np.testing.assert_array_equal(batch[Columns.TRUNCATEDS][:, 0], [False, False, False, True])
    next_vf = batch[Columns.NEXT_VF_PREDS][:, 0]
    assert next_vf[0] == 0.0  # a terminated: no bootstrap
    with torch.inference_mode():
        final_v = policy.value(torch.tensor([[6.0, 0.0, 1.0]]))
    assert final_v is not None
    assert next_vf[3] == pytest.approx(float(final_v[0]), rel=1e-6)  # b truncated: V(final obs)
    np.testing.assert_array_equal(batch[Columns.NEXT_OBS][[0, 3], 0], [[4, 1, 0], [6, 0, 1]])
    assert second.episode_returns == [44.0]
    assert second.episode_lengths == [6]
    assert sorted(second.policy_episodes["shared"]) == [(4.0, 4), (40.0, 4)]
    assert second.rollouts["shared"].episode_returns == [4.0, 40.0]
    runner.close()


def test_runner_agent_that_vanishes_counts_as_truncated() -> None:
    obs = gym.spaces.Box(0.0, 1.0, shape=(6,), dtype=np.float32)
    slot = PolicySlot(obs, gym.spaces.Discrete(3), AC_POLICY, ModelConfig())
    runner = MultiAgentEnvRunner(
        MultiAgentRunnerConfig(
            env="kuberl.multi_agent.envs:coop_match",
            env_config={"agents": 2, "late_agent": True},
            num_envs=2,
            policies={"p": slot},
            seed=1,
        )
    )
    out = runner.sample(10)
    # Per episode: two regular agents for 10 steps and the late one for 4 (it leaves without a flag).
    assert sorted(n for _, n in out.policy_episodes["p"]) == [4, 4, 10, 10, 10, 10]
    batch = out.rollouts["p"].batch
    assert batch[Columns.OBS].shape[0] == 2 * (10 + 10 + 4)
    assert not batch[Columns.TERMINATEDS].any()
    assert int(batch[Columns.TRUNCATEDS].sum()) == 6  # every agent episode ends truncated
    runner.close()


def tictactoe_runner(model: ModelConfig) -> MultiAgentEnvRunner:
    obs_space, act_space = tictactoe_spaces()
    slot = PolicySlot(obs_space, act_space, AC_POLICY, model)
    return MultiAgentEnvRunner(
        MultiAgentRunnerConfig(
            env="classic/tictactoe-v3",
            env_config={},
            num_envs=8,
            policies={"x": slot, "o": slot},
            rules=(("player_1", "x"), ("player_2", "o")),
            seed=0,
        )
    )


def test_turn_based_games_with_masks_never_play_illegal_moves() -> None:
    """AEC stepping: only the acting player observes; a game's rewards are zero-sum unless someone plays
    an illegal move (PettingZoo then ends it with −1 for the offender only)."""
    runner = tictactoe_runner(masked_model_config(ModelConfig()))
    out = runner.sample(60)
    assert len(out.episode_returns) >= 40
    assert all(r == 0.0 for r in out.episode_returns)
    assert {r for r, _ in out.policy_episodes["x"]} <= {-1.0, 0.0, 1.0}
    assert any(r != 0 for r, _ in out.policy_episodes["x"])
    # X moves first: it never has fewer moves than O in a game.
    assert out.agent_steps["x"] >= out.agent_steps["o"]
    for pid in ("x", "o"):
        batch = out.rollouts[pid].batch
        done = batch[Columns.TERMINATEDS][:, 0]
        assert set(batch[Columns.REWARDS][:, 0][~done].tolist()) <= {0.0}  # rewards only at game ends
    runner.close()

    unmasked = tictactoe_runner(ModelConfig())  # the same test catches illegal moves without a mask
    assert any(r < 0 for r in unmasked.sample(60).episode_returns)
    unmasked.close()
