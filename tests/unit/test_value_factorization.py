"""QMIX and VDN: the mixers, validation (through `kuberl run`, exit 2 naming the field, nothing written),
checkpoints that restore bit-identically, compute_actions for a joint observation, and action masks
(never taken when acting, excluded from the TD target's max)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from kuberl.algorithms.families.value_factorization import (
    FactoredQ,
    MonotonicMixer,
    SumMixer,
    factored_td_loss,
)
from kuberl.build import build_algorithm
from kuberl.core.multi_agent.agent_q import AgentQ, TeamState, build_agent_q, epsilon_greedy
from kuberl.core.multi_agent.joint_runner import JointRunner, JointRunnerConfig
from kuberl.core.multi_agent.sequence_replay import SequenceReplay
from kuberl.spec import SpecError, parse_job
from kuberl.spec.algorithms import ModelConfig
from tests.cli import kuberl


def job(tmp_path: Path, algorithm: str = "QMIX", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kuberl.io/v1alpha1",
        "kind": "RLTrainingJob",
        "metadata": {"name": "vf"},
        "spec": {
            "algorithm": algorithm,
            "env": "kuberl.envs:make_two_step_game",
            "seed": 3,
            "runDir": str(tmp_path / "run"),
            "config": {"num_steps_sampled_before_learning_starts": 16, "train_batch_size": 8},
            "stop": {"timesteps": 64},
            "metrics": {"enabled": False},
            "resources": {"envRunners": 0, "envsPerRunner": 2},
            **spec,
        },
    }


def test_the_qmix_mixer_is_monotonic_in_every_agent_q() -> None:
    torch.manual_seed(0)
    mixer = MonotonicMixer(3, 5, 8, 16)
    q = torch.randn(64, 3, requires_grad=True)
    mixer(q, torch.randn(64, 5)).sum().backward()
    assert q.grad is not None
    assert bool((q.grad >= 0).all())
    assert torch.equal(SumMixer()(q.detach(), torch.zeros(64, 5)), q.detach().sum(-1))


def test_checkpoint_restores_exactly_and_acts_for_a_joint_observation(tmp_path: Path) -> None:
    doc = job(tmp_path, config={"num_steps_sampled_before_learning_starts": 16, "train_batch_size": 8,
                                "store_buffer_in_checkpoints": True})  # fmt: skip
    algo = build_algorithm(doc)
    for _ in range(20):
        algo.train()
    uri = algo.save(str(tmp_path / "ckpt"))
    after = [algo.train()["learner"]["default_policy"]["total_loss"] for _ in range(3)]
    obs = {"agent_0": np.array([1, 0, 0], np.float32), "agent_1": np.array([1, 0, 0], np.float32)}
    actions = algo.compute_actions(obs)
    assert set(actions) == {"agent_0", "agent_1"}
    assert all(a in (0, 1) for a in actions.values())
    assert algo.compute_actions(np.stack(list(obs.values()))).shape == (2,)
    weights = algo.get_weights()
    algo.stop()

    again = build_algorithm(doc)
    again.restore(uri)
    assert again.iteration == 20
    assert [again.train()["learner"]["default_policy"]["total_loss"] for _ in range(3)] == after
    restored = again.get_weights()
    assert all(np.array_equal(weights[k], restored[k]) for k in weights)
    assert again.compute_actions(obs) == actions
    again.stop()


def test_multi_agent_is_refused_with_the_reason() -> None:
    doc = job(Path("/nonexistent"), multiAgent={})
    with pytest.raises(SpecError) as err:
        parse_job(doc)
    assert "drop multiAgent" in dict(err.value.problems)["spec.multiAgent"]


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ("CartPole-v1", "a cooperative PettingZoo ParallelEnv is required"),
        ("classic/tictactoe-v3", "turn-based (AEC)"),
        ("kuberl.multi_agent.envs:coop_match", "Discrete"),
    ],
)
def test_kuberl_run_refuses_envs_it_cannot_train(env: str, reason: str, tmp_path: Path) -> None:
    doc = job(tmp_path, "VDN", env=env)
    if env.endswith("coop_match"):
        doc["spec"]["envConfig"] = {"agents": 2, "continuous": True}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(doc))
    proc = kuberl("run", str(path), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert "spec.env" in proc.stderr, proc.stderr[-1000:]
    assert reason in proc.stderr, proc.stderr[-1000:]
    assert not (tmp_path / "run").exists()


# -- action masks ------------------------------------------------------------------------------------


def test_masked_actions_are_never_taken_even_when_they_have_the_highest_q() -> None:
    rng = np.random.default_rng(0)
    q = torch.tensor([[[5.0, 1.0, 0.0], [0.0, 9.0, 1.0]]]).expand(500, -1, -1)  # [N, agents, actions]
    legal = torch.tensor([[[False, True, True], [True, False, True]]]).expand(500, -1, -1)
    greedy = epsilon_greedy(q, 0.0, rng, legal)
    assert (greedy == np.array([1, 2])).all()  # the best legal action, not the argmax
    random = epsilon_greedy(q, 1.0, rng, legal)
    assert not (random[:, 0] == 0).any()
    assert not (random[:, 1] == 1).any()
    assert set(random[:, 0]) == {1, 2}
    assert set(random[:, 1]) == {0, 2}


def test_the_td_target_maximises_over_legal_next_actions_only() -> None:
    """One agent whose next observation forbids its best action: the target values the best legal one."""
    torch.manual_seed(0)
    where = slice(0, 2)  # [mask(2) | observation(1)]
    agent = AgentQ(3, 2, 2, [8], "relu")
    online = FactoredQ(agent, SumMixer())
    next_obs = torch.tensor([[[0.0, 1.0, 1.0], [1.0, 1.0, 1.0]]])  # agent_0 may only take action 1
    with torch.no_grad():
        agent.net[-1].weight.zero_()
        agent.net[-1].bias.copy_(torch.tensor([10.0, -3.0]))  # Q(·, 0) = 10, Q(·, 1) = -3 everywhere
    batch = {
        "obs": next_obs, "state": torch.zeros(1, 1), "actions": torch.zeros(1, 2), "reward": torch.zeros(1),
        "next_obs": next_obs, "next_state": torch.zeros(1, 1), "terminated": torch.zeros(1),
    }  # fmt: skip
    for double_q in (True, False):
        masked = factored_td_loss(
            online, online, batch, gamma=1.0, double_q=double_q, loss_fn="mse", mask=where
        )
        unmasked = factored_td_loss(online, online, batch, gamma=1.0, double_q=double_q, loss_fn="mse")
        assert float(masked["target_q_tot_mean"]) == pytest.approx(-3.0 + 10.0)  # agent_0: -3, agent_1: 10
        assert float(unmasked["target_q_tot_mean"]) == pytest.approx(20.0)


# -- the recurrent (GRU) agent network ----------------------------------------------------------------


def gru_runner(max_seq_len: int) -> JointRunner:
    model = ModelConfig(fcnet_hiddens=[8], fcnet_activation="relu", use_lstm=True, lstm_cell_size=4,
                        max_seq_len=max_seq_len)  # fmt: skip
    runner = JointRunner(JointRunnerConfig("kuberl.envs:make_two_step_game", {}, 2, 2, model, seed=0))
    torch.manual_seed(0)
    net = build_agent_q(model, 3, 2, 2)
    runner.set_state({k: v.numpy() for k, v in net.state_dict().items()}, {"epsilon": 0.5})
    return runner


def test_runners_return_whole_episodes_and_carry_the_gru_state_across_sequences() -> None:
    whole = gru_runner(max_seq_len=20).sample()
    # Two envs × two steps: each env's one two-step episode, from a zero state, its last step terminal.
    assert len(whole.sequences) == 2
    for seq in whole.sequences:
        assert seq["obs"].shape == (3, 2, 3)
        assert seq["actions"].shape == (2, 2)
        assert float(seq["terminated"]) == 1.0
        assert not seq["h0"].any()
    cut = gru_runner(max_seq_len=1).sample()
    # Sequences of one step: the second of each episode starts from the state after the first step.
    assert len(cut.sequences) == 4
    assert [float(s["terminated"]) for s in cut.sequences] == [0.0, 0.0, 1.0, 1.0]
    assert not cut.sequences[0]["h0"].any()
    assert cut.sequences[2]["h0"].any()
    assert np.array_equal(cut.sequences[2]["obs"][0], cut.sequences[0]["obs"][1])


def test_sequence_replay_pads_and_masks_the_steps_it_lacks() -> None:
    replay = SequenceReplay(100, seed=0)
    long = gru_runner(max_seq_len=20).sample().sequences[0]
    short = gru_runner(max_seq_len=1).sample().sequences[0]
    replay.add([long, short])
    assert len(replay) == 3
    batch = replay.sample(50)
    assert batch["obs"].shape[1:] == (3, 2, 3)
    for i in range(len(batch["valid"])):
        n = int(batch["valid"][i].sum())
        assert n in (1, 2)
        assert batch["valid"][i].tolist() == [1.0] * n + [0.0] * (2 - n)
    replay.add([long] * 60)  # 120 more steps: the oldest sequences go
    assert len(replay) <= 100


def test_qmix_with_a_gru_trains_checkpoints_and_restores_exactly(tmp_path: Path) -> None:
    model = {"fcnet_hiddens": [8], "fcnet_activation": "relu", "use_lstm": True, "lstm_cell_size": 8}
    doc = job(tmp_path, config={"num_steps_sampled_before_learning_starts": 16, "train_batch_size": 8,
                                "store_buffer_in_checkpoints": True, "model": model})  # fmt: skip
    algo = build_algorithm(doc)
    for _ in range(20):
        algo.train()
    uri = algo.save(str(tmp_path / "ckpt"))
    after = [algo.train()["learner"]["default_policy"]["total_loss"] for _ in range(3)]
    assert algo.evaluate(2)["episode_return_mean"] is not None
    with pytest.raises(ValueError, match="compute_actions_with_state"):
        algo.compute_actions(np.zeros((2, 3), np.float32))
    assert_compute_actions_with_state_steps_each_agents_gru(algo)
    algo.stop()
    again = build_algorithm(doc)
    again.restore(uri)
    assert [again.train()["learner"]["default_policy"]["total_loss"] for _ in range(3)] == after
    again.stop()


def assert_compute_actions_with_state_steps_each_agents_gru(algo: Any) -> None:
    """The recurrent team's policy API: the state starts at zeros per agent, one GRU step per call
    (the step the runners take), rows independent, reset where an episode ended; compute_single_action
    takes a joint observation as a dict and gives back the state."""
    obs = np.random.default_rng(0).random((3, 2, 3)).astype(np.float32)
    state = algo.initial_state(3)
    assert isinstance(state, TeamState)
    assert state.h.shape == (3, 2, 8)
    assert not state.h.any()
    actions, nxt = algo.compute_actions_with_state(obs, state)
    assert actions.shape == (3, 2)
    agent = algo.agent_network()
    with torch.no_grad():
        q, h = agent.step(torch.as_tensor(obs), state.h)
    assert torch.equal(nxt.h, h)
    np.testing.assert_array_equal(actions, q.argmax(-1).numpy())
    one, one_next = algo.compute_actions_with_state(
        obs[1], algo.initial_state(1)
    )  # [agents, D]: one joint obs
    np.testing.assert_array_equal(one, actions[1])
    torch.testing.assert_close(one_next.h[0], nxt.h[1])  # a batch of 1 rounds differently in the last bits
    reset = nxt.after_step(np.zeros(3), np.array([False, True, False]))
    assert not reset.h[1].any()
    assert torch.equal(reset.h[0], nxt.h[0])
    action, state1, extras = algo.get_policy().compute_single_action(
        {"agent_0": obs[1, 0], "agent_1": obs[1, 1]}
    )
    assert action == {"agent_0": int(actions[1, 0]), "agent_1": int(actions[1, 1])}
    assert torch.equal(state1.h, one_next.h)
    assert extras == {}
    again = algo.compute_single_action(obs[1], state1)
    assert again[1].h.shape == (1, 2, 8)
    with pytest.raises(ValueError, match="rows"):
        algo.compute_actions_with_state(obs, algo.initial_state(2))
