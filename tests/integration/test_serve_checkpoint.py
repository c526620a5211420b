"""`kuberl serve --checkpoint` (docs/export.md): the CLI as a subprocess on 127.0.0.1, real HTTP
requests. Its actions equal `compute_actions` (an LSTM's state carried by the client from answer to
request), bad bodies get a 400 with the reason and the server keeps answering, SIGTERM ends it cleanly."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.cli import cli_env, kuberl
from tests.integration.test_export import trained_checkpoint

pytestmark = pytest.mark.integration


def start(uri: str, cwd: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "kuberl.cli", "serve", "--checkpoint", uri, "--port", "0", *extra],
        cwd=cwd, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()  # blocks until the server listens (or the process ends)
    if "serving" not in line:
        proc.kill()
        _, err = proc.communicate(timeout=30)
        pytest.fail(f"no server: {line!r}\n{err}")
    url = line.split(" at ")[1].split()[0]
    return proc, url


@pytest.fixture
def served(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[Any, str, subprocess.Popen[str]]]:
    algo, uri = trained_checkpoint(request.param, tmp_path)
    proc, url = start(uri, tmp_path)
    try:
        yield algo, url, proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
        algo.stop()


@pytest.mark.parametrize("served", ["mlp"], indirect=True)
def test_actions_errors_and_sigterm(served: tuple[Any, str, subprocess.Popen[str]]) -> None:
    algo, url, proc = served
    algo.obs_space.seed(0)
    obs = np.stack([algo.obs_space.sample() for _ in range(500)])
    with httpx.Client(base_url=url, timeout=60) as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        info = http.get("/v1/model").json()
        assert (info["algorithm"], info["recurrent"]) == ("PPO", False)
        res = http.post("/v1/actions", json={"observations": obs.tolist()})
        assert res.status_code == 200, res.text
        np.testing.assert_array_equal(res.json()["actions"], algo.compute_actions(obs))
        assert len(set(res.json()["actions"])) > 1, "a policy that always acts the same proves little"
        sampled = http.post("/v1/actions", json={"observations": obs.tolist(), "explore": True}).json()
        assert all(algo.action_space.contains(a) for a in sampled["actions"])
        assert sampled["actions"] != res.json()["actions"], "explore: true samples"

        bad = {
            "observations[1]: observation has shape [3]": {"observations": [[0, 0, 0, 0], [0, 0, 0]]},
            "observations[0]: observation must be a number": {"observations": [["a", 0, 0, 0]]},
            "state: this policy is not recurrent": {"observations": [[0] * 4], "state": {"h": [[0]], "c": [[0]]}},
            "observations: Field required": {"obs": [[0] * 4]},
            "observations: List should have at least 1 item": {"observations": []},
        }  # fmt: skip
        for reason, body in bad.items():
            r = http.post("/v1/actions", json=body)
            assert r.status_code == 400, (body, r.text)
            assert reason in r.json()["detail"], r.json()
        r = http.post("/v1/actions", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 400
        # still serving, still the same answers
        again = http.post("/v1/actions", json={"observations": obs[:10].tolist()})
        assert again.json()["actions"] == res.json()["actions"][:10]
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err


@pytest.mark.parametrize("served", ["lstm"], indirect=True)
def test_lstm_state_in_state_out(served: tuple[Any, str, subprocess.Popen[str]]) -> None:
    algo, url, _ = served
    algo.obs_space.seed(1)
    steps, batch = 5, 50
    raw = [np.stack([algo.obs_space.sample() for _ in range(batch)]) for _ in range(steps)]
    state, sent = algo.initial_state(batch), None
    with httpx.Client(base_url=url, timeout=60) as http:
        assert http.get("/v1/model").json()["lstm_cell_size"] == algo.config.model.lstm_cell_size
        for t in range(steps):
            expected, state = algo.compute_actions_with_state(raw[t], state)
            res = http.post("/v1/actions", json={"observations": raw[t].tolist(), "state": sent})
            assert res.status_code == 200, res.text
            np.testing.assert_array_equal(res.json()["actions"], expected)
            sent = res.json()["state"]
        r = http.post(
            "/v1/actions", json={"observations": raw[0].tolist(), "state": {"h": [[0.0]], "c": [[0.0]]}}
        )
        assert r.status_code == 400
        assert "state.h has shape [1, 1]" in r.json()["detail"]


def test_checkpoint_with_a_job_is_refused(tmp_path: Path) -> None:
    res = kuberl("serve", "examples/ppo-job.yaml", "--checkpoint", str(tmp_path), cwd=tmp_path)
    assert res.returncode == 2
    assert "--checkpoint" in res.stderr
    assert "Traceback" not in res.stderr
    res = kuberl("serve", "--checkpoint", str(tmp_path / "nothing"), cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
