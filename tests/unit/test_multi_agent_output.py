"""`spec.output` with `spec.multiAgent`: one Parquet row per agent step, whole agent episodes uncut by
sample boundaries, `agent_id`/`policy_id`/`env_episode_id` columns, one directory per policy, every
policy recorded (trained or frozen), and the files readable by the offline reader."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from kuberl.build import build_algorithm
from kuberl.core.offline.reader import OfflineData
from kuberl.core.offline.schema import C, arrow_schema
from kuberl.multi_agent.algorithm import MultiAgentAlgorithm
from kuberl.spec.offline import InputSpec
from tests.fixtures.jobs import job_doc


def relay_doc(tmp_path: Path, out: Path, **spec: Any) -> dict[str, Any]:
    """tests.ma_envs Relay: `a` acts at env steps 0-3 and terminates (reward 1 per step); `b` acts at steps
    2-5 and is truncated (10 per step). `a` uses the trained policy `pa`, `b` the frozen `pb`."""
    own = {
        "metrics": {"enabled": False},
        "output": {"uri": str(out), "maxRowsPerFile": 20},
        "multiAgent": {
            "policies": {"pa": {}, "pb": {"trainable": False}},
            "policyMapping": [
                {"agentPattern": "a", "policy": "pa"},
                {"agentPattern": "b", "policy": "pb"},
            ],
        },
    }
    # 2 envs × a few steps per sample: fragments are cut mid-episode on purpose.
    config = {"trainBatchSize": 6, "minibatchSize": 6, "numEpochs": 1, "model": {"fcnet_hiddens": [8]}}
    return job_doc(
        "PPO",
        "tests.ma_envs:make_relay",
        seed=0,
        name="ma-record",
        run_dir=tmp_path / "run",
        config=config,
        envs_per_runner=2,
        **{**own, **spec},
    )


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, MultiAgentAlgorithm]:
    tmp = tmp_path_factory.mktemp("ma-output")
    out = tmp / "data"
    algo = build_algorithm(relay_doc(tmp, out))
    assert isinstance(algo, MultiAgentAlgorithm)
    try:
        for _ in range(6):
            algo.train()
    finally:
        algo.stop()
    return out, algo


def read(directory: Path) -> dict[str, np.ndarray]:
    files = sorted(directory.glob("*.parquet"))
    assert files, f"nothing recorded in {directory}"
    assert not list(directory.glob(".*")), "no temporary files left behind"
    table = pq.read_table(files)
    cols = {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}
    cols[C.OBS] = np.stack(cols[C.OBS])
    cols[C.NEXT_OBS] = np.stack(cols[C.NEXT_OBS])
    return cols


def test_one_directory_per_policy_with_the_agent_columns(recorded: tuple[Path, MultiAgentAlgorithm]) -> None:
    out, algo = recorded
    assert sorted(p.name for p in out.iterdir()) == ["pa", "pb"]
    for pid in ("pa", "pb"):
        obs_space, action_space = algo.policy_spaces[pid]
        files = sorted((out / pid).glob("*.parquet"))
        assert len(files) >= 2, "maxRowsPerFile 20 splits the recording into several files"
        schema = pq.read_schema(files[0])
        assert schema.equals(arrow_schema(obs_space, action_space, multi_agent=True), check_metadata=True)
        cols = read(out / pid)
        assert set(cols[C.POLICY_ID]) == {pid}
        assert set(cols[C.AGENT_ID]) == {"a" if pid == "pa" else "b"}
    total = sum(len(read(out / pid)[C.T]) for pid in ("pa", "pb"))
    assert algo.agent_writer is not None
    assert total == algo.agent_writer.rows_written


@pytest.mark.parametrize(
    ("pid", "reward", "ending"), [("pa", 1.0, C.TERMINATEDS), ("pb", 10.0, C.TRUNCATEDS)]
)
def test_agent_episodes_are_whole_and_uncut(
    recorded: tuple[Path, MultiAgentAlgorithm], pid: str, reward: float, ending: str
) -> None:
    """Each agent episode has its 4 steps in order, ends the way the env ended it (a terminated, b
    truncated by the time limit) and nowhere else, although samples cut it into fragments for training."""
    out, _ = recorded
    cols = read(out / pid)
    other = C.TRUNCATEDS if ending == C.TERMINATEDS else C.TERMINATEDS
    episodes = np.unique(cols[C.EPISODE_ID])
    assert len(episodes) >= 10
    for ep in episodes:
        idx = np.flatnonzero(cols[C.EPISODE_ID] == ep)
        assert np.array_equal(cols[C.T][idx], np.arange(4))
        assert np.all(cols[C.REWARDS][idx] == reward)
        assert cols[ending][idx].tolist() == [False, False, False, True]
        assert not cols[other][idx].any()
        np.testing.assert_array_equal(cols[C.NEXT_OBS][idx[:-1]], cols[C.OBS][idx[1:]])
        # Relay observations are [t, is_a, is_b]: a acts at env steps 0-3, b at 2-5.
        first = 0.0 if pid == "pa" else 2.0
        assert cols[C.OBS][idx, 0].tolist() == [first, first + 1, first + 2, first + 3]
    if pid == "pa":  # PPO's behaviour log-probabilities are recorded for the trained policy
        assert np.all(np.isfinite(cols[C.ACTION_LOGP]))
        assert np.all(cols[C.ACTION_LOGP] <= 0)


def test_env_episode_id_joins_the_agents_of_one_game(recorded: tuple[Path, MultiAgentAlgorithm]) -> None:
    out, _ = recorded
    a, b = read(out / "pa"), read(out / "pb")
    games_a = {int(g): set(a[C.EPISODE_ID][a[C.ENV_EPISODE_ID] == g]) for g in np.unique(a[C.ENV_EPISODE_ID])}
    games_b = set(np.unique(b[C.ENV_EPISODE_ID]).tolist())
    assert all(len(eps) == 1 for eps in games_a.values()), "one agent episode of `a` per game"
    shared = set(games_a) & games_b
    assert len(shared) >= 0.8 * min(len(games_a), len(games_b)), "both agents of a game share its id"
    assert not set(a[C.EPISODE_ID]) & set(b[C.EPISODE_ID]), "agent episodes have their own ids"


def test_a_policy_directory_reads_as_offline_input(recorded: tuple[Path, MultiAgentAlgorithm]) -> None:
    """One policy's files are the single-agent format plus columns: the offline reader (spec.input of
    BC/MARWIL/CQL) reads them, with returns-to-go per agent episode."""
    out, _ = recorded
    reader = OfflineData(
        InputSpec(uris=[str(out / "pb")], shuffle_buffer_size=0),
        columns=(C.OBS, C.ACTIONS, C.RETURNS_TO_GO),
        returns_to_go_gamma=1.0,
        seed=0,
    )
    try:
        batch = reader.next_batch(8)
        assert batch[C.OBS].shape == (8, 3)
        # b earns 10 per step for 4 steps: returns-to-go are 40, 30, 20, 10 within its own episode.
        assert set(batch[C.RETURNS_TO_GO].tolist()) <= {10.0, 20.0, 30.0, 40.0}
    finally:
        reader.close()
