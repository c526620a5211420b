"""`spec.external` + `spec.output`: the episodes clients send (remote and local mode) are written to
Parquet as whole episodes, through the same writer as env-runner runs, and read back by the offline
reader with the returns the clients logged.

The observations are synthetic (any value of CartPole's observation space will do: the server never
steps the env), so every episode has exactly the length and rewards the test chooses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from kuberl import PolicyClient
from kuberl.build import build_algorithm
from kuberl.core.offline.reader import complete_episodes, resolve_files
from kuberl.core.offline.schema import C, table_to_numpy
from kuberl.external.recording import EpisodeRecorder
from kuberl.external.runner_group import ExternalRunnerGroup
from kuberl.spec import apply_overrides, parse_job, read_document
from kuberl.spec.external import TOKEN_ENV

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "rec-token"


def obs_at(k: int, t: int) -> list[float]:
    """A distinct, valid CartPole observation for step t of episode k."""
    return [0.01 * t, 0.1 * k, 0.001 * t, -0.01 * k]


def reward_at(k: int, t: int) -> float:
    return 0.5 + 0.25 * k + 0.01 * t


class Sim:
    """One client's episodes, with the returns and lengths it logged."""

    def __init__(self, client: PolicyClient) -> None:
        self.client = client
        self.logged: dict[int, tuple[float, int]] = {}  # episode k → (return, length)
        self.ids: dict[int, str] = {}
        self.t: dict[int, int] = {}

    def steps(self, k: int, n: int, *, own_actions: bool = False) -> None:
        c = self.client
        if k not in self.ids:
            self.ids[k], self.t[k] = c.start_episode(), 0
        for _ in range(n):
            t = self.t[k]
            if own_actions:  # a scripted controller: no behaviour log-probability
                c.log_action(self.ids[k], obs_at(k, t), t % 2)
            else:
                c.get_action(self.ids[k], obs_at(k, t))
            c.log_returns(self.ids[k], reward_at(k, t))
            self.t[k] = t + 1

    def end(self, k: int, *, truncated: bool = False) -> None:
        self.client.end_episode(self.ids[k], obs_at(k, self.t[k]), truncated=truncated)
        n = self.t[k]
        self.logged[k] = (sum(reward_at(k, t) for t in range(n)), n)

    def episode(self, k: int, n: int, **kw: Any) -> None:
        self.steps(k, n, own_actions=kw.pop("own_actions", False))
        self.end(k, **kw)


def test_external_run_records_whole_episodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    out = tmp_path / "experience"
    doc = apply_overrides(
        read_document(ROOT / "examples" / "ppo-external.yaml"),
        [
            f"runDir={tmp_path}",
            "external.port=0",
            "config.train_batch_size=64",
            "config.minibatch_size=32",
            f"output.uri={out}",
        ],
    )
    algo = build_algorithm(parse_job(doc))
    assert isinstance(algo.writer, EpisodeRecorder)
    assert isinstance(algo.runners, ExternalRunnerGroup)
    url = algo.runners.url
    try:
        remote = Sim(PolicyClient(url, token=TOKEN))
        local = Sim(PolicyClient(url, token=TOKEN, inference_mode="local", seed=2))
        remote.episode(0, 20)
        remote.episode(1, 20, truncated=True)
        local.episode(2, 20)
        local.episode(3, 20)
        remote.steps(4, 12)  # still running when the first batch is taken: cut after 11 steps
        algo.train()  # 91 steps ≥ 64: returns at once
        remote.steps(4, 8)
        remote.end(4)
        local.episode(5, 20)
        remote.episode(6, 40, own_actions=True)
        local.steps(7, 5)  # never ended: recorded at the end as an unfinished episode
        local.client.flush()
        algo.train()  # 9 + 20 + 40 + 4 = 73 steps ≥ 64: returns at once
        remote.client.close()
        local.client.close()
    finally:
        algo.stop()  # closes the writer: unfinished episodes are written too

    files, fs = resolve_files([str(out)])
    assert files
    data = table_to_numpy(pq.read_table(files, filesystem=fs))
    episodes = complete_episodes(data)
    logged = {**remote.logged, **local.logged}
    assert len(episodes) == len(logged) == 7
    # Whole episodes with the clients' returns: episode 4 spans both batches and is still one episode.
    got = sorted((round(float(e[C.REWARDS].sum()), 3), len(e[C.REWARDS])) for e in episodes)
    assert got == sorted((round(r, 3), n) for r, n in logged.values())
    for e in episodes:
        n = len(e[C.REWARDS])
        # Done only at the end (the cut of episode 4 is not a truncation in the recording), and s'
        # is the next row's s within an episode.
        assert not (e[C.TERMINATEDS][:-1] | e[C.TRUNCATEDS][:-1]).any()
        np.testing.assert_allclose(e[C.NEXT_OBS][:-1], e[C.OBS][1:])
        k = round(float(e[C.OBS][0][1]) / 0.1)  # obs_at puts the episode's number there
        np.testing.assert_allclose(e[C.NEXT_OBS][-1], obs_at(k, n), rtol=1e-6)
        assert bool(e[C.TRUNCATEDS][-1]) == (k == 1)
        assert bool(e[C.TERMINATEDS][-1]) == (k != 1)
        if k == 6:  # client-chosen actions: recorded as chosen, behaviour log-prob unknown (null)
            assert e[C.ACTIONS].tolist() == [t % 2 for t in range(n)]
            assert np.isnan(e[C.ACTION_LOGP].astype(np.float64)).all()
        else:  # the server's (remote) or the client's (local) policy acted: its log-prob
            assert np.isfinite(e[C.ACTION_LOGP].astype(np.float64)).all()
    # Episode 7 was never ended: written at the stop, its last row neither terminated nor truncated.
    unfinished = set(data[C.EPISODE_ID].tolist()) - {int(e[C.EPISODE_ID][0]) for e in episodes}
    assert len(unfinished) == 1
    rows = data[C.EPISODE_ID] == unfinished.pop()
    assert rows.sum() == 4  # 5 actions; the 5th step's next observation never came
    assert not (data[C.TERMINATEDS][rows] | data[C.TRUNCATEDS][rows]).any()
