"""Recurrent (LSTM) policies: the module (reset mask, unroll = step by step), the runner policy (state
reset at episode ends, recorded columns the learner can replay exactly, truncation bootstraps), sequence
chunking and PPO's sequence minibatches, the spec fields, compute_actions_with_state, evaluation and
checkpoints of PPO/IMPALA/APPO with use_lstm."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from pydantic import ValidationError

from kuberl.algorithms.families.vtrace_async import forward_sequences, with_resets
from kuberl.algorithms.ppo import PPOLearner
from kuberl.build import build_algorithm
from kuberl.core.distributions import Categorical
from kuberl.core.env_runner import EnvRunner, RunnerConfig
from kuberl.core.models import build_model
from kuberl.core.recurrent import (
    RecurrentActorCritic,
    RecurrentActorCriticPolicy,
    RecurrentColumns,
    RecurrentState,
    bootstrap_values,
    chunk_sequences,
    episode_starts,
    sequence_forward,
)
from kuberl.core.sample_batch import Columns, SampleBatch
from kuberl.evaluate import evaluate_checkpoint
from kuberl.spec import ModelConfig, PPOConfig, parse_job
from kuberl.spec.algorithms import CONFIG_MODELS
from tests.fixtures.jobs import job_doc

OBS = gym.spaces.Box(-1.0, 1.0, (3,))
ACT = gym.spaces.Discrete(2)


def model(**kw: Any) -> RecurrentActorCritic:
    torch.manual_seed(0)
    cfg = ModelConfig(use_lstm=True, lstm_cell_size=8, fcnet_hiddens=[16], **kw)
    module = build_model(OBS, ACT, cfg)
    assert isinstance(module, RecurrentActorCritic)
    return module


# -- spec ------------------------------------------------------------------------------------------


def test_spec_accepts_rllib_names_and_camel_case() -> None:
    cfg = PPOConfig.model_validate(
        {"model": {"use_lstm": True, "lstmCellSize": 64, "max_seq_len": 16, "lstmUsePrevAction": True}}
    )
    m = cfg.model
    assert (m.use_lstm, m.lstm_cell_size, m.max_seq_len, m.lstm_use_prev_action, m.lstm_use_prev_reward) == (
        True,
        64,
        16,
        True,
        False,
    )
    defaults = ModelConfig()
    assert (defaults.use_lstm, defaults.lstm_cell_size, defaults.max_seq_len) == (False, 256, 20)
    assert all(f.description for f in ModelConfig.model_fields.values())


@pytest.mark.parametrize("algorithm", sorted(set(CONFIG_MODELS) - {"PPO", "IMPALA", "APPO", "QMIX", "VDN"}))
def test_use_lstm_is_rejected_by_algorithms_that_cannot_train_it(algorithm: str) -> None:
    with pytest.raises(ValidationError, match=rf"model.use_lstm: {algorithm} cannot train a recurrent"):
        CONFIG_MODELS[algorithm].model_validate({"model": {"useLstm": True}})


def test_use_lstm_errors_name_the_field_in_a_job() -> None:
    doc = job("DQN", {"model": {"use_lstm": True}})
    with pytest.raises(Exception, match="use_lstm"):
        parse_job(doc)
    with pytest.raises(ValidationError, match="custom_model"):
        ModelConfig(use_lstm=True, custom_model="a.b:C")
    with pytest.raises(ValidationError, match=r"lstm_cell_size|lstmCellSize"):
        ModelConfig(use_lstm=True, lstm_cell_size=0)


# -- module ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("prev", [False, True])
def test_unrolled_sequence_equals_step_by_step_with_resets(prev: bool) -> None:
    module = model(lstm_use_prev_action=prev, lstm_use_prev_reward=prev)
    T, B = 7, 3
    gen = torch.Generator().manual_seed(1)
    obs = torch.rand(T, B, 3, generator=gen)
    prev_a = torch.randint(-1, 2, (T, B), generator=gen)
    prev_r = torch.rand(T, B, generator=gen)
    resets = torch.zeros(T, B, dtype=torch.bool)
    resets[3, 0] = resets[5, 2] = True
    state = RecurrentState(torch.rand(B, 8), torch.rand(B, 8), prev_a[0], prev_r[0])
    with torch.no_grad():
        dist_in, values, (final_h, final_c) = module(
            obs, state, resets, prev_actions=prev_a, prev_rewards=prev_r
        )
        h, c = state.h, state.c
        for t in range(T):
            keep = (~resets[t]).float().unsqueeze(-1)
            s = RecurrentState(h * keep, c * keep, prev_a[t], prev_r[t])
            d, v, h, c = module.step(obs[t], s)
            torch.testing.assert_close(d, dist_in[t])
            torch.testing.assert_close(v, values[t])
    torch.testing.assert_close(final_h, h)
    torch.testing.assert_close(final_c, c)


def test_reset_mask_zeroes_the_state() -> None:
    module = model()
    obs = torch.rand(2, 2, 3)
    hot = RecurrentState(
        torch.ones(2, 8) * 3, torch.ones(2, 8) * 3, torch.zeros(2, dtype=torch.int64), torch.zeros(2)
    )
    resets = torch.tensor([[True, False], [False, False]])
    with torch.no_grad():
        from_reset, _, _ = module(
            obs, hot, resets, prev_actions=torch.zeros(2, 2), prev_rewards=torch.zeros(2, 2)
        )
        fresh = module.initial_state(2)
        from_zero, _, _ = module(
            obs, fresh, None, prev_actions=torch.zeros(2, 2), prev_rewards=torch.zeros(2, 2)
        )
    torch.testing.assert_close(from_reset[:, 0], from_zero[:, 0])  # row 0 was reset before step 0
    assert not torch.allclose(from_reset[:, 1], from_zero[:, 1])  # row 1 kept its (hot) state


def test_state_reset_and_after_step() -> None:
    s = RecurrentState(torch.ones(3, 2), torch.ones(3, 2), torch.tensor([1, 0, 1]), torch.zeros(3))
    out = s.after_step(np.array([0.5, 1.0, 2.0]), np.array([False, True, False]))
    assert out.h[1].abs().sum() == 0
    assert out.c[1].abs().sum() == 0
    assert out.h[0].sum() == 2
    assert out.h[2].sum() == 2
    assert out.prev_actions.tolist() == [1, -1, 1]  # −1: no previous action in a fresh episode
    assert out.prev_rewards.tolist() == [0.5, 0.0, 2.0]
    assert s.h[1].sum() == 2  # a copy: the original is untouched


# -- runner ----------------------------------------------------------------------------------------


def recurrent_runner(env: str, env_config: dict[str, Any], **model_kw: Any) -> EnvRunner:
    cfg = RunnerConfig(
        env=env,
        env_config=env_config,
        num_envs=3,
        rollout_length=20,
        model=ModelConfig(use_lstm=True, lstm_cell_size=8, fcnet_hiddens=[16], **model_kw),
        seed=5,
        policy=RecurrentActorCriticPolicy,
        store_next_obs=True,
    )
    return EnvRunner(cfg)


def tensors(batch: SampleBatch) -> dict[str, torch.Tensor]:
    return {k: torch.as_tensor(np.array(v)) for k, v in batch.items()}


def test_runner_resets_state_at_episode_ends_and_records_what_the_learner_replays() -> None:
    # Recall episodes last 6 steps; 20-step rollouts cut them at different places.
    r = recurrent_runner("kuberl.envs:make_recall", {"num_cues": 3, "delay": 4}, lstm_use_prev_action=True)
    first, second = r.sample(), r.sample()
    for out in (first, second):
        b = out.batch
        starts = episode_starts(b[Columns.TERMINATEDS], b[Columns.TRUNCATEDS])
        h = b[RecurrentColumns.STATE_H]
        assert starts.any()
        assert np.all(h[starts] == 0.0)
        assert np.all(b[RecurrentColumns.PREV_ACTIONS][starts] == -1)
        inside = ~starts
        inside[0] = False
        assert np.all(np.abs(h[inside]).sum(-1) > 0)
        np.testing.assert_array_equal(
            b[RecurrentColumns.PREV_ACTIONS][1:][inside[1:]], b[Columns.ACTIONS][:-1][inside[1:]]
        )
        # The learner's unroll from the recorded first state reproduces the runner's step-by-step outputs.
        seq = with_resets(tensors(b))
        with torch.no_grad():
            dist_in, values, hs, cs = sequence_forward(r.module, seq)
            torch.testing.assert_close(dist_in, seq[Columns.ACTION_DIST_INPUTS], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(values, seq[Columns.VF_PREDS], rtol=1e-5, atol=1e-5)
            next_v = bootstrap_values(r.module, seq, hs, cs)
        done = np.logical_or(b[Columns.TERMINATEDS], b[Columns.TRUNCATEDS])
        ok = torch.as_tensor(~b[Columns.TERMINATEDS])
        torch.testing.assert_close(next_v[ok], seq[Columns.NEXT_VF_PREDS][ok], rtol=1e-5, atol=1e-5)
        assert done.any()
    # The state carries over between rollouts: the second starts where the first stopped.
    assert np.abs(second.batch[RecurrentColumns.STATE_H][0]).sum() > 0


def test_truncation_bootstraps_from_the_ended_episodes_state() -> None:
    r = recurrent_runner("tests.envs:make_chain", {"length": 50, "max_steps": 7}, lstm_use_prev_reward=True)
    b = r.sample().batch
    trunc = b[Columns.TRUNCATEDS]
    assert trunc[:-1].any()
    assert not b[Columns.TERMINATEDS].any()
    seq = with_resets(tensors(b))
    with torch.no_grad():
        _, _, hs, cs = sequence_forward(r.module, seq)
        next_v = bootstrap_values(r.module, seq, hs, cs)
        t, i = np.argwhere(trunc[:-1])[0]
        # V(final obs) continues the ended episode's state; a reset state would give another value.
        fresh = r.module.initial_state(1)
        from_zero = r.module.step(torch.as_tensor(b[Columns.NEXT_OBS][t, i][None]), fresh)[1]
    torch.testing.assert_close(next_v, seq[Columns.NEXT_VF_PREDS], rtol=1e-5, atol=1e-5)
    assert not torch.isclose(from_zero[0], seq[Columns.NEXT_VF_PREDS][t, i])


# -- sequences and PPO minibatches -----------------------------------------------------------------


def test_chunk_sequences_layout() -> None:
    x = np.arange(12 * 2).reshape(12, 2)  # [T=12, N=2], value = 2t + n
    seq = chunk_sequences({"x": x}, 4)["x"]
    assert seq.shape == (4, 6)
    # sequence k·N + n holds steps 4k..4k+3 of env n
    np.testing.assert_array_equal(seq[:, 0], [0, 2, 4, 6])
    np.testing.assert_array_equal(seq[:, 1], [1, 3, 5, 7])
    np.testing.assert_array_equal(seq[:, 2], [8, 10, 12, 14])
    with pytest.raises(ValueError, match="multiple"):
        chunk_sequences({"x": x}, 5)


def test_ppo_learner_trains_on_whole_sequences() -> None:
    module = model()
    cfg = PPOConfig(minibatch_size=16, train_batch_size=64, num_epochs=2)
    learner = PPOLearner(module, Categorical(), cfg, torch.device("cpu"))
    L, S = 4, 16  # 16 sequences of 4 steps; 16 // 4 = 4 sequences per minibatch → 4 minibatches per epoch
    rng = np.random.default_rng(0)
    batch = SampleBatch(
        {
            Columns.OBS: rng.random((L, S, 3), dtype=np.float32),
            Columns.ACTIONS: rng.integers(0, 2, (L, S)),
            Columns.ACTION_LOGP: np.full((L, S), np.log(0.5), np.float32),
            Columns.ACTION_DIST_INPUTS: np.zeros((L, S, 2), np.float32),
            Columns.REWARDS: rng.random((L, S), dtype=np.float32),
            Columns.VF_PREDS: np.zeros((L, S), np.float32),
            Columns.ADVANTAGES: rng.normal(size=(L, S)).astype(np.float32),
            Columns.VALUE_TARGETS: rng.normal(size=(L, S)).astype(np.float32),
            RecurrentColumns.STATE_H: np.zeros((L, S, 8), np.float32),
            RecurrentColumns.STATE_C: np.zeros((L, S, 8), np.float32),
            RecurrentColumns.PREV_ACTIONS: np.full((L, S), -1),
            RecurrentColumns.PREV_REWARDS: np.zeros((L, S), np.float32),
            RecurrentColumns.RESETS: np.zeros((L, S), bool),
        }
    )
    before = [p.detach().clone() for p in module.parameters()]
    seen: list[tuple[int, ...]] = []
    original = module.unroll

    def spy(x: torch.Tensor, *args: Any) -> tuple[torch.Tensor, torch.Tensor]:
        seen.append(tuple(x.shape[:2]))
        return original(x, *args)

    module.unroll = spy  # type: ignore[method-assign,assignment]
    stats = learner.update(batch, timesteps=0, generator=torch.Generator().manual_seed(0))
    assert seen == [(L, 4)] * 8  # 2 epochs × 4 minibatches, each 4 whole sequences of L steps
    assert stats["epochs"] == 2.0
    assert np.isfinite(stats["total_loss"])
    assert any(not torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True))


# -- algorithms ------------------------------------------------------------------------------------


def job(algorithm: str, config: dict[str, Any], runners: int = 0) -> dict[str, Any]:
    return job_doc(
        algorithm,
        "kuberl.envs:make_recall",
        seed=2,
        name=f"{algorithm.lower()}-lstm-unit",
        config=config,
        runners=runners,
        envConfig={"num_cues": 3, "delay": 2},
    )


LSTM = {"use_lstm": True, "lstm_cell_size": 8, "fcnet_hiddens": [16], "lstm_use_prev_action": True}
CONFIGS = {
    "PPO": {
        "train_batch_size": 100,
        "minibatch_size": 40,
        "num_epochs": 2,
        "model": {**LSTM, "max_seq_len": 10},
    },
    "IMPALA": {
        "train_batch_size": 80,
        "rollout_fragment_length": 20,
        "min_sample_timesteps_per_iteration": 160,
        "model": LSTM,
    },
    "APPO": {
        "train_batch_size": 80,
        "rollout_fragment_length": 20,
        "min_sample_timesteps_per_iteration": 160,
        "minibatch_size": 40,
        "num_epochs": 2,
        "model": LSTM,
    },
}


def play(algo: Any, obs: np.ndarray, steps: int) -> list[np.ndarray]:
    state = algo.initial_state(len(obs))
    actions = []
    for _ in range(steps):
        a, state = algo.compute_actions_with_state(obs, state)
        state = state.after_step(np.zeros(len(obs)), np.zeros(len(obs), dtype=bool))
        actions.append(a)
    return actions


def test_compute_actions_with_state_is_the_runner_policys_step(tmp_path: Path) -> None:
    """One inference path: compute_actions_with_state with a caller-held state gives what a runner's
    RecurrentActorCriticPolicy (same weights) gives stepping its own state, across an episode end."""
    config = {**CONFIGS["PPO"], "model": {**LSTM, "max_seq_len": 10, "lstm_use_prev_reward": True}}
    algo = build_algorithm(job("PPO", config), run_dir=tmp_path)
    try:
        runner = RecurrentActorCriticPolicy(algo.obs_space, algo.action_space, algo.runner_config.model, {})
        runner.module.load_state_dict(algo.policy_module().state_dict())
        obs = np.eye(4, dtype=np.float32)[[0, 1, 2, 3]]
        rewards = np.array([1.0, 0.0, -1.0, 0.5])
        state = algo.initial_state(len(obs))
        assert state is not None
        for t in range(5):
            done = np.array([t == 2, False, t == 3, False])
            ours, state = algo.compute_actions_with_state(obs, state)
            with torch.inference_mode():
                theirs = runner.act(torch.as_tensor(obs), explore=False, generator=torch.default_generator)
            np.testing.assert_array_equal(ours, theirs[Columns.ACTIONS].numpy())
            state = state.after_step(rewards, done)
            runner.after_step(rewards, done, np.zeros(len(obs), dtype=bool))
            assert runner.state is not None
            torch.testing.assert_close(state.h, runner.state.h)
            torch.testing.assert_close(state.prev_rewards, runner.state.prev_rewards)
            obs = obs[[1, 2, 3, 0]]
        # The algorithm's cached runner policy keeps no caller's state.
        assert algo.inference_policy().state is None
    finally:
        algo.stop()


@pytest.mark.parametrize("algorithm", ["PPO", "IMPALA", "APPO"])
def test_training_compute_actions_and_checkpoint_round_trip(algorithm: str, tmp_path: Path) -> None:
    algo = build_algorithm(job(algorithm, CONFIGS[algorithm]), run_dir=tmp_path / "a")
    obs = np.eye(4, dtype=np.float32)[[0, 1, 2, 3, 0]]  # a cue, a blank, the query flag…
    try:
        assert algo.rollout_length() % 10 == 0 or algorithm != "PPO"  # PPO: 100 / 4 = 25 → 30 (seq 10)
        result = algo.train()
        stats = result["learner"]["default_policy"]
        assert np.isfinite(stats["total_loss"])
        assert np.isfinite(stats["vf_loss"])
        with pytest.raises(ValueError, match="recurrent"):
            algo.compute_actions(obs)
        expected = play(algo, obs, 4)
        one = algo.initial_state(1)
        assert one is not None
        single, state = algo.compute_actions_with_state(obs[0], one)
        assert np.ndim(single) == 0
        assert len(state) == 1
        uri = algo.save(str(tmp_path / "ckpt"))
    finally:
        algo.stop()
    fresh = build_algorithm(job(algorithm, CONFIGS[algorithm]), run_dir=tmp_path / "b")
    try:
        fresh.restore(uri)
        for a, b in zip(play(fresh, obs, 4), expected, strict=True):
            np.testing.assert_array_equal(a, b)
        assert fresh.evaluate(5)["episodes"] == 5
    finally:
        fresh.stop()
    stats = evaluate_checkpoint(uri, episodes=3)  # what `kuberl evaluate` runs
    assert stats["episodes"] == 3
    assert stats["episode_len_mean"] == 4.0


def test_ppo_rollout_length_is_whole_sequences() -> None:
    algo = build_algorithm(job("PPO", CONFIGS["PPO"]))
    try:
        assert algo.rollout_length() == 30  # ceil(100 / 4 envs) = 25, rounded up to 3 sequences of 10
        assert algo.runner_config.policy is RecurrentActorCriticPolicy
    finally:
        algo.stop()


def test_impala_forward_sequences_matches_the_runner() -> None:
    algo = build_algorithm(job("IMPALA", CONFIGS["IMPALA"]))
    try:
        runner = algo.runners.local
        assert runner is not None
        b = runner.sample().batch
        seq = tensors(b)
        with torch.no_grad():
            _, _, _, values, next_values, logp = forward_sequences(
                algo.learner.module, algo.learner.dist, seq
            )
        torch.testing.assert_close(values, seq[Columns.VF_PREDS], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(logp, seq[Columns.ACTION_LOGP], rtol=1e-5, atol=1e-5)
        ok = torch.as_tensor(~b[Columns.TERMINATEDS])
        torch.testing.assert_close(next_values[ok], seq[Columns.NEXT_VF_PREDS][ok], rtol=1e-5, atol=1e-5)
    finally:
        algo.stop()


def test_job_json_round_trips_lstm_fields(tmp_path: Path) -> None:
    doc = job("PPO", CONFIGS["PPO"])
    wire = parse_job(doc).model_dump(mode="json", by_alias=True, exclude_unset=True)
    model_doc = wire["spec"]["config"]["model"]
    assert model_doc["useLstm"] is True
    assert model_doc["maxSeqLen"] == 10
    assert parse_job(json.loads(json.dumps(wire))).spec.config.model.lstm_use_prev_action is True


def test_continuous_actions_with_previous_action_input(tmp_path: Path) -> None:
    model_cfg = {**LSTM, "lstm_use_prev_reward": True, "max_seq_len": 5}
    doc = job("PPO", {"train_batch_size": 40, "minibatch_size": 20, "num_epochs": 1, "model": model_cfg})
    doc["spec"]["env"], doc["spec"]["envConfig"] = "Pendulum-v1", {}
    algo = build_algorithm(doc, run_dir=tmp_path)
    try:
        runner = algo.runners.local
        assert runner is not None
        b = runner.sample().batch
        assert b[RecurrentColumns.PREV_ACTIONS].shape == (10, 4, 1)
        np.testing.assert_array_equal(b[RecurrentColumns.PREV_ACTIONS][0], 0.0)  # fresh episodes
        np.testing.assert_array_equal(b[RecurrentColumns.PREV_ACTIONS][1:], b[Columns.ACTIONS][:-1])
        np.testing.assert_allclose(b[RecurrentColumns.PREV_REWARDS][1:], b[Columns.REWARDS][:-1])
        with torch.no_grad():
            dist_in, values, _, _ = sequence_forward(algo.learner.module, tensors(b))
        torch.testing.assert_close(
            dist_in, torch.as_tensor(b[Columns.ACTION_DIST_INPUTS]), rtol=1e-5, atol=1e-5
        )
        torch.testing.assert_close(values, torch.as_tensor(b[Columns.VF_PREDS]), rtol=1e-5, atol=1e-5)
        assert np.isfinite(algo.train()["learner"]["default_policy"]["total_loss"])
        state = algo.initial_state(3)
        assert state is not None
        actions, _ = algo.compute_actions_with_state(np.zeros((3, 3), np.float32), state, explore=True)
        assert actions.shape == (3, 1)
        assert np.all(np.abs(actions) <= 2.0)  # clipped to the action bounds
    finally:
        algo.stop()


def test_image_observations_go_through_the_cnn_before_the_lstm(tmp_path: Path) -> None:
    doc = job("PPO", CONFIGS["PPO"])
    doc["spec"]["env"], doc["spec"]["envConfig"] = "tests.envs:make_bright_side", {}
    algo = build_algorithm(doc, run_dir=tmp_path)
    try:
        module = algo.learner.module
        assert isinstance(module, RecurrentActorCritic)
        assert module.encoder is not None
        assert np.isfinite(algo.train()["learner"]["default_policy"]["total_loss"])
        assert algo.evaluate(4)["episode_len_mean"] == 8.0
    finally:
        algo.stop()
