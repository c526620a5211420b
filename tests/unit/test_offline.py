"""Offline RL pieces: the spec, the Parquet writer (schema, episode structure, atomic files), the Ray
Data reader (returns-to-go, whole episodes), off-policy estimators against hand values, the OPE gauge,
and BC / MARWIL / CQL checkpoint round trips on data recorded here by a real run."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families

from kuberl.algorithms.base import Algorithm
from kuberl.algorithms.cql import conservative_penalty
from kuberl.build import build_algorithm
from kuberl.checkpoint.uri import parse_uri
from kuberl.core.networks import SquashedGaussianActor
from kuberl.core.offline import ope
from kuberl.core.offline.reader import (
    OfflineData,
    add_returns_to_go,
    complete_episodes,
    discounted_returns_to_go,
    resolve_files,
)
from kuberl.core.offline.schema import C, arrow_schema
from kuberl.core.offline.writer import LocalSink
from kuberl.metrics import TrainerMetrics
from kuberl.spec import SpecError, parse_job
from kuberl.spec.algorithms import ModelConfig
from kuberl.spec.offline import InputSpec
from tests.fixtures.jobs import job_doc

SMALL = {"fcnet_hiddens": [16, 16]}


def job(algorithm: str, env: str, run_dir: Path, **spec: Any) -> dict[str, Any]:
    return job_doc(algorithm, env, seed=3, run_dir=run_dir, **spec)


def record(algo: Algorithm, samples: int) -> None:
    try:
        for _ in range(samples):
            algo.sample()
    finally:
        algo.stop()


@pytest.fixture(scope="module")
def cartpole_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Algorithm]:
    """An untrained PPO policy's experience (4 envs × 64 steps × 6 rollouts), recorded with output."""
    root = tmp_path_factory.mktemp("cartpole")
    doc = job(
        "PPO",
        "CartPole-v1",
        root / "run",
        config={"trainBatchSize": 256, "minibatchSize": 64, "model": SMALL},
        output={"uri": str(root / "data"), "maxRowsPerFile": 300},
    )
    algo = build_algorithm(doc)
    record(algo, 6)
    return root / "data", algo


@pytest.fixture(scope="module")
def pendulum_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pendulum")
    doc = job(
        "SAC",
        "Pendulum-v1",
        root / "run",
        config={"model": SMALL, "rolloutFragmentLength": 100},
        output={"uri": str(root / "data")},
    )
    record(build_algorithm(doc), 2)
    return root / "data"


# -- spec -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "value", "path", "reason"),
    [
        ("output", {"uri": "http://host/x"}, "spec.output.uri", "unsupported scheme"),
        ("output", {"uri": "s3://Bad_Bucket/x"}, "spec.output.uri", "not a valid S3 URI"),
        ("output", {"uri": "/data/*.parquet"}, "spec.output.uri", "glob"),
        ("output", {"uri": "/data", "maxRowsPerFile": 0}, "spec.output.maxRowsPerFile", "greater than"),
        ("output", {"uri": "/data", "compression": "lz5"}, "spec.output.compression", "zstd"),
        ("input", {"uris": []}, "spec.input.uris", "at least 1"),
        ("input", {"uris": ["ftp://x/y"]}, "spec.input.uris", "unsupported scheme in 'ftp://x/y'"),
        ("input", {"uris": ["/d"], "numReaders": 0}, "spec.input.numReaders", "greater than"),
        ("input", {"uris": ["/d"], "shuffle": 3}, "spec.input.shuffle", "unknown field"),
    ],
)
def test_bad_offline_spec_names_the_field(
    tmp_path: Path, section: str, value: dict[str, Any], path: str, reason: str
) -> None:
    with pytest.raises(SpecError) as err:
        parse_job(job("BC", "CartPole-v1", tmp_path, **{section: value}))
    paths = [p for p, _ in err.value.problems]
    assert path in paths, err.value.problems
    assert reason in str(err.value)


def test_input_accepts_rllib_names_and_globs(tmp_path: Path) -> None:
    doc = job("MARWIL", "CartPole-v1", tmp_path, input_={"uris": ["s3://bkt/d/*.parquet"], "concurrency": 4})
    spec = parse_job(doc).spec
    assert spec.input_ is not None
    assert spec.input_.num_readers == 4
    wire = parse_job(doc).model_dump(mode="json", by_alias=True)
    assert wire["spec"]["input"]["uris"] == ["s3://bkt/d/*.parquet"]


def test_offline_algorithm_without_input_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as err:
        build_algorithm(job("BC", "CartPole-v1", tmp_path))
    assert err.value.first_path == "spec.input"


def test_output_refuses_a_moving_observation_filter(tmp_path: Path) -> None:
    doc = job(
        "PPO",
        "CartPole-v1",
        tmp_path,
        config={"observationFilter": "MeanStdFilter"},
        output={"uri": str(tmp_path / "d")},
    )
    with pytest.raises(SpecError, match="MeanStdFilter"):
        build_algorithm(doc)


# -- writer ------------------------------------------------------------------------------------------


def test_writer_schema_and_episode_structure(cartpole_data: tuple[Path, Algorithm]) -> None:
    data, algo = cartpole_data
    files = sorted(data.glob("*.parquet"))
    assert len(files) >= 2, "maxRowsPerFile 300 must split 1536 rows into several files"
    assert len(pq.read_table(files)) == algo.writer.rows_written == 6 * 64 * 4
    check_recording(data, algo)


def test_writer_with_two_runner_actors(tmp_path: Path) -> None:
    """Rollouts of two Ray runner actors interleave in the driver; episodes stay whole per runner and env."""
    doc = job(
        "PPO",
        "CartPole-v1",
        tmp_path / "run",
        config={"trainBatchSize": 256, "minibatchSize": 64, "model": SMALL},
        output={"uri": str(tmp_path / "data"), "maxRowsPerFile": 200},
        resources={"envRunners": 2, "envsPerRunner": 2, "cpusPerRunner": 0.5},
    )
    algo = build_algorithm(doc)
    record(algo, 4)
    assert algo.writer is not None
    assert algo.writer.rows_written == 4 * 2 * 2 * 64
    check_recording(tmp_path / "data", algo)


def check_recording(data: Path, algo: Algorithm) -> None:
    files = sorted(data.glob("*.parquet"))
    assert not list(data.glob(".*")), "no temporary files left behind"
    table = pq.read_table(files)
    assert table.schema.equals(arrow_schema(algo.obs_space, algo.action_space), check_metadata=True)
    rows = {k: table.column(k).to_numpy(zero_copy_only=False) for k in (C.EPISODE_ID, C.T)}
    obs = np.stack(table.column(C.OBS).to_numpy(zero_copy_only=False))
    next_obs = np.stack(table.column(C.NEXT_OBS).to_numpy(zero_copy_only=False))
    term = table.column(C.TERMINATEDS).to_numpy(zero_copy_only=False)
    trunc = table.column(C.TRUNCATEDS).to_numpy(zero_copy_only=False)
    rewards = table.column(C.REWARDS).to_numpy()
    logp = table.column(C.ACTION_LOGP).to_numpy()
    assert np.all(np.isfinite(logp))
    assert np.all(logp <= 0.0)
    finished = []
    for ep in np.unique(rows[C.EPISODE_ID]):
        idx = np.flatnonzero(rows[C.EPISODE_ID] == ep)
        # Whole episodes, in step order, within one file.
        assert np.array_equal(rows[C.T][idx], np.arange(len(idx)))
        assert (
            len({f for f in files if ep in pq.read_table(f, columns=[C.EPISODE_ID]).column(0).to_pylist()})
            == 1
        )
        # s' of a step is s of the next one inside an episode; only the last step may be done.
        np.testing.assert_array_equal(next_obs[idx[:-1]], obs[idx[1:]])
        assert not np.any(term[idx[:-1]] | trunc[idx[:-1]])
        if term[idx[-1]] or trunc[idx[-1]]:
            finished.append(float(rewards[idx].sum()))
    # Every episode the run counted as finished is in the files, with the same return (the run keeps the
    # last 100 returns; the recordings here finish fewer episodes than that).
    assert algo.episodes_total < 100
    assert sorted(finished) == sorted(algo.returns)


def test_local_files_appear_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sink = LocalSink(parse_uri(str(tmp_path)))

    def crash(src: str, dst: str) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr("kuberl.core.offline.writer.os.replace", crash)
    with pytest.raises(OSError):
        sink.put("part-1.parquet", b"PAR1 half a file")
    # The half-written file is hidden and is not *.parquet: no reader can pick it up.
    assert not list(tmp_path.glob("*.parquet"))
    with pytest.raises(SpecError, match=r"names no \.parquet files"):
        resolve_files([str(tmp_path)])


# -- reader -----------------------------------------------------------------------------------------


def test_returns_to_go_hand_values() -> None:
    np.testing.assert_allclose(discounted_returns_to_go(np.array([1.0, 2.0, 3.0]), 0.5), [2.75, 3.5, 3.0])
    import pyarrow as pa

    table = pa.table(
        {
            C.EPISODE_ID: pa.array([7, 9, 7, 9], pa.int64()),
            C.T: pa.array([1, 0, 0, 1], pa.int32()),
            C.REWARDS: pa.array([10.0, 1.0, 1.0, 1.0], pa.float32()),
        }
    )
    out = add_returns_to_go(table, 0.9).column(C.RETURNS_TO_GO).to_pylist()
    assert out == pytest.approx([10.0, 1.9, 10.0, 1.0])
    broken = pa.table({C.EPISODE_ID: [1], C.T: pa.array([3], pa.int32()), C.REWARDS: [1.0]})
    with pytest.raises(ValueError, match="not whole"):
        add_returns_to_go(broken, 0.9)


def test_complete_episodes_drops_partial_ones() -> None:
    data = {
        C.EPISODE_ID: np.array([1, 1, 2, 2, 3, 3]),
        C.T: np.array([0, 1, 1, 2, 0, 1]),  # episode 2 misses its first step
        C.TERMINATEDS: np.array([False, True, False, True, False, False]),  # episode 3 never ended
        C.TRUNCATEDS: np.zeros(6, bool),
    }
    eps = complete_episodes(data)
    assert [int(e[C.EPISODE_ID][0]) for e in eps] == [1]


def test_reader_batches_and_episodes(cartpole_data: tuple[Path, Algorithm]) -> None:
    data, algo = cartpole_data
    reader = OfflineData(
        InputSpec(uris=[str(data / "*.parquet")], shuffle_buffer_size=500),
        columns=(C.OBS, C.ACTIONS, C.RETURNS_TO_GO),
        returns_to_go_gamma=1.0,
        seed=0,
    )
    batch = reader.next_batch(100)
    assert batch[C.OBS].shape == (100, 4)
    assert batch[C.OBS].dtype == np.float32
    assert batch[C.ACTIONS].shape == (100,)
    assert set(np.unique(batch[C.ACTIONS])) <= {0, 1}
    assert np.all(batch[C.RETURNS_TO_GO] >= 1.0)  # CartPole pays 1 per step: G_t ≥ 1 with γ = 1
    for _ in range(20):  # 1536 rows: epochs roll over without running dry
        reader.next_batch(100)
    assert reader.epochs >= 1
    eps = reader.episodes(5, (C.REWARDS, C.ACTION_LOGP))
    assert len(eps) == 5
    for e in eps:
        assert e[C.TERMINATEDS][-1] or e[C.TRUNCATEDS][-1]
        assert float(e[C.REWARDS].sum()) in algo.returns


# -- off-policy estimation ---------------------------------------------------------------------------


def test_ope_hand_values() -> None:
    # Episode A: 2 steps, rewards 1, 1; ratios 2 then 0.5 (log-probs chosen so). Episode B: 1 step, reward 3, ratio 1.
    a = ope.Episode(
        rewards=np.array([1.0, 1.0]),
        behaviour_logp=np.log([0.25, 0.5]),
        target_logp=np.log([0.5, 0.25]),
    )
    b = ope.Episode(rewards=np.array([3.0]), behaviour_logp=np.log([0.5]), target_logp=np.log([0.5]))
    gamma = 0.9
    # Per-decision weights: A: w0 = 2, w1 = 1; B: w0 = 1, then held at 1 with reward 0.
    assert ope.importance_sampling([a, b], gamma) == pytest.approx(((2 * 1 + 0.9 * 1 * 1) + 3.0) / 2)
    wis = (2 * 1 + 1 * 3) / (2 + 1) + 0.9 * (1 * 1 + 1 * 0) / (1 + 1)
    assert ope.weighted_importance_sampling([a, b], gamma) == pytest.approx(wis)
    assert ope.behaviour_value([a, b], gamma) == pytest.approx(((1 + 0.9) + 3.0) / 2)
    # On-policy data: every ratio is 1 and both estimators equal the behaviour value.
    on = [ope.Episode(e.rewards, e.behaviour_logp, e.behaviour_logp) for e in (a, b)]
    est = ope.estimate(on, gamma)
    assert est["is"] == pytest.approx(est["v_behaviour"])
    assert est["wis"] == pytest.approx(est["v_behaviour"])
    with pytest.raises(ValueError):
        ope.importance_sampling([], gamma)


def test_ope_gauge() -> None:
    metrics = TrainerMetrics(job="j", namespace="n", algorithm="BC")
    metrics.update({"training_iteration": 1, "off_policy_estimation": {"is": 12.5, "wis": float("nan")}})
    samples = {
        (s.name, s.labels.get("estimator")): s.value
        for fam in text_string_to_metric_families(metrics.exposition().decode())
        for s in fam.samples
        if s.name == "kuberl_off_policy_estimate"
    }
    assert samples == {("kuberl_off_policy_estimate", "is"): 12.5}  # NaN is never exported


# -- CQL pieces ---------------------------------------------------------------------------------------


def test_squashed_log_prob_matches_sampling() -> None:
    torch.manual_seed(0)
    actor = SquashedGaussianActor(3, 2, ModelConfig(fcnet_hiddens=[8]))
    obs = torch.randn(5, 3)
    a, logp = actor.sample(obs)
    torch.testing.assert_close(actor.log_prob(obs, a), logp, atol=1e-3, rtol=1e-3)


def test_conservative_penalty_hand_values() -> None:
    # One critic, one state, one action per proposal, temperature 1: log(e^1/0.5 + e^2/e^-1 + e^0/1) − Q(data).
    one = torch.ones(1, 1, 1)
    pen = conservative_penalty(
        torch.tensor([[0.5]]),
        one * 1.0,
        math.log(0.5),
        one * 2.0,
        torch.tensor([[-1.0]]),
        one * 0.0,
        torch.tensor([[0.0]]),
        temperature=1.0,
    )
    expected = math.log(math.exp(1.0) / 0.5 + math.exp(2.0) / math.exp(-1.0) + 1.0) - 0.5
    assert pen.item() == pytest.approx(expected)


# -- checkpoint round trips -------------------------------------------------------------------------


def _round_trip(doc: dict[str, Any], obs: np.ndarray) -> dict[str, Any]:
    """Train, save, restore into a new instance, compare; returns the first iteration's result."""
    algo = build_algorithm(doc)
    try:
        first = algo.train()
        assert first["num_env_steps_trained"] == 32 * 5
        assert first["timesteps_total"] == 160
        uri = algo.save()
        expected = algo.compute_actions(obs)
        state = algo.get_state()["algo"]
        algo.train()
    finally:
        algo.stop()
    again = build_algorithm(doc)
    try:
        again.restore(uri)
        assert again.iteration == 1
        assert again.timesteps == 160
        np.testing.assert_allclose(again.compute_actions(obs), expected, rtol=1e-6)
        assert set(again.get_state()["algo"]) == set(state)
        result = again.train()
        assert result["training_iteration"] == 2
        assert all(math.isfinite(v) for v in result["learner"]["default_policy"].values())
    finally:
        again.stop()
    return first


@pytest.mark.parametrize("algorithm", ["BC", "MARWIL"])
def test_bc_marwil_checkpoint_round_trip(
    tmp_path: Path, cartpole_data: tuple[Path, Algorithm], algorithm: str
) -> None:
    data, _ = cartpole_data
    doc = job(
        algorithm,
        "CartPole-v1",
        tmp_path,
        input={"uris": [str(data)], "opeEpisodes": 5},
        config={"model": SMALL, "trainBatchSize": 32, "updatesPerIteration": 5},
        evaluation={"interval": 1, "episodes": 2},
    )
    obs = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    est = _round_trip(doc, obs)["off_policy_estimation"]
    assert est["episodes"] == 5
    assert math.isfinite(est["wis"])
    assert est["v_behaviour"] > 0


def test_cql_checkpoint_round_trip(tmp_path: Path, pendulum_data: Path) -> None:
    doc = job(
        "CQL",
        "Pendulum-v1",
        tmp_path,
        input={"uris": [str(pendulum_data)]},
        config={"model": SMALL, "trainBatchSize": 32, "updatesPerIteration": 5, "numActions": 3},
    )
    obs = gym.make("Pendulum-v1").observation_space.sample()[None].repeat(3, 0)
    _round_trip(doc, obs)


def test_cql_acts_through_the_runner_policy(tmp_path: Path, pendulum_data: Path) -> None:
    """CQL samples no env, yet compute_actions goes through the one inference path (SAC's runner policy
    with the learner's actor weights): greedy actions are tanh(μ(s)) scaled to the bounds, exploring ones
    samples within them."""
    doc = job(
        "CQL",
        "Pendulum-v1",
        tmp_path,
        input={"uris": [str(pendulum_data)]},
        config={"model": SMALL, "trainBatchSize": 32, "updatesPerIteration": 5, "numActions": 3},
    )
    space = gym.make("Pendulum-v1").observation_space
    space.seed(0)
    obs = np.stack([space.sample() for _ in range(16)])
    algo = build_algorithm(doc)
    try:
        algo.train()
        learner = algo.learner  # type: ignore[attr-defined]
        with torch.inference_mode():
            direct = learner.scaler.to_env(learner.actor.deterministic(torch.as_tensor(obs))).numpy()
        np.testing.assert_allclose(algo.compute_actions(obs), direct, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(algo.compute_actions(obs[0]), direct[0], rtol=1e-6, atol=1e-7)
        explored = algo.compute_actions(obs, explore=True)
        assert explored.shape == direct.shape
        assert np.all(np.abs(explored) <= 2.0)
        assert not np.allclose(explored, direct)
    finally:
        algo.stop()


def test_writer_rejects_rollouts_without_next_obs(tmp_path: Path) -> None:
    from kuberl.core.env_runner import Rollout
    from kuberl.core.offline.writer import ExperienceWriter
    from kuberl.core.sample_batch import Columns, SampleBatch
    from kuberl.spec.offline import OutputSpec

    writer = ExperienceWriter(
        OutputSpec(uri=str(tmp_path)), gym.spaces.Box(-1.0, 1.0, (3,)), gym.spaces.Discrete(2)
    )
    batch = SampleBatch(
        {
            Columns.OBS: np.zeros((2, 1, 3), np.float32),
            Columns.ACTIONS: np.zeros((2, 1), np.int64),
            Columns.REWARDS: np.ones((2, 1), np.float32),
            Columns.TERMINATEDS: np.array([[False], [True]]),
            Columns.TRUNCATEDS: np.zeros((2, 1), bool),
        }
    )
    with pytest.raises(SpecError) as err:
        writer.add(Rollout(batch=batch))
    assert err.value.first_path == "spec.output"
    assert not list(tmp_path.iterdir())


def test_record_checkpoint(tmp_path: Path) -> None:
    """`kuberl record`: a checkpoint's policy sampled into Parquet without training it."""
    from kuberl.record import record_checkpoint

    doc = job("PPO", "CartPole-v1", tmp_path / "run", config={"trainBatchSize": 256, "model": SMALL})
    doc["spec"]["config"]["minibatchSize"] = 64
    algo = build_algorithm(doc)
    try:
        algo.train()
        checkpoint = algo.save(str(tmp_path / "ckpt"))
        weights = algo.get_weights()
    finally:
        algo.stop()
    stats = record_checkpoint(checkpoint, output=str(tmp_path / "data"), steps=500, envs=2)
    assert stats["rows"] >= 500
    table = pq.read_table(sorted((tmp_path / "data").glob("*.parquet")))
    assert len(table) == stats["rows"]
    # The recorded log-probabilities are the checkpoint's policy's, which recording did not change.
    again = build_algorithm(doc)
    try:
        again.restore(checkpoint)
        for k, v in again.get_weights().items():
            np.testing.assert_array_equal(v, weights[k])
        obs = np.stack(table.column(C.OBS).to_numpy(zero_copy_only=False))[:50]
        actions = table.column(C.ACTIONS).to_numpy()[:50]
        with torch.no_grad():
            dist_in, _ = again.policy_module()(torch.as_tensor(obs))
            logp = torch.log_softmax(dist_in, -1).gather(-1, torch.as_tensor(actions)[:, None]).squeeze(-1)
        np.testing.assert_allclose(table.column(C.ACTION_LOGP).to_numpy()[:50], logp.numpy(), atol=1e-5)
    finally:
        again.stop()
    with pytest.raises(ValueError, match="at least 1"):
        record_checkpoint(checkpoint, output=str(tmp_path / "x"), steps=0)
