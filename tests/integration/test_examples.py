"""Every file in examples/ run the way users (and the operator's pod) run it: `kuberl run` as a
subprocess, with a tiny budget, in a fresh directory; then `kuberl evaluate` of the checkpoint it wrote,
and `kuberl render` of the same file. Examples that need a simulator client or recorded data get them
from the test, through the CLI too (`kuberl record`, examples/external_cartpole_client.py).

CI-sized for 2 cores: most examples sample in the driver (`resources.envRunners=0`, no Ray); those in
WITH_RUNNERS keep the example's env-runner actors so the Ray path stays covered.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import pytest
import yaml

from tests import cli

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
# Examples run with their own env-runner actors (one Ray start each, ~10 s here): one per sampling path.
WITH_RUNNERS = {"ppo-job.yaml", "impala-cartpole.yaml", "ma-coop-ppo.yaml"}
# The data each offline example reads (`spec.input.uris`), recorded first from a tiny run of this job.
OFFLINE_SOURCES = {"CartPole-v1": "ppo-job.yaml", "Pendulum-v1": "sac-pendulum.yaml"}
TOKEN = "examples-test-token"

pytestmark = pytest.mark.integration


kuberl = partial(cli.kuberl, timeout=400)


def budget(doc: dict, name: str) -> list[str]:
    """One iteration (`stop.timesteps=1`: any iteration passes it), metrics on a free port, and in-driver
    sampling unless the example is one of WITH_RUNNERS."""
    sets = ["stop.timesteps=1", "metrics.port=0"]
    spec = doc["spec"]
    if name not in WITH_RUNNERS and "tune" not in spec:
        sets.append("resources.envRunners=0")
    if "updates_per_iteration" in spec.get("config", {}):  # offline: one iteration is that many updates
        sets.append("config.updates_per_iteration=5")
    if "tune" in spec:  # the smallest sweep the file allows: one sample per grid point, one at a time
        sets += [
            "tune.numSamples=2"
            if spec["tune"].get("scheduler", {}).get("type") == "PBT"
            else "tune.numSamples=1"
        ]
        sets += ["tune.maxConcurrentTrials=1", "resources.envRunners=0"]
        if spec["tune"].get("scheduler", {}).get("type") == "PBT":
            sets.append("tune.scheduler.pbt.perturbationInterval=1")
            sets[0] = "stop.iterations=2"
    return [a for s in sets for a in ("--set", s)]


def checkpoints(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.rglob("manifest.json"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where `record_input` keeps what it recorded, for the module: BC and MARWIL read the same CartPole
    recording, made once (a `kuberl run` and a `kuberl record`, ~20 s on CI) and linked into each test."""
    return tmp_path_factory.mktemp("recordings")


def record_input(doc: dict, cwd: Path, store: Path) -> None:
    """Make what `spec.input.uris` names where the example reads it (`cwd`): a tiny run of a sampling
    example, then `kuberl record` of its checkpoint into `store` (unless an earlier test did), linked."""
    env = doc["spec"]["env"]
    source = store / env / "source"
    if not source.exists():
        run = kuberl(
            "run", str(ROOT / "examples" / OFFLINE_SOURCES[env]), "--run-dir", str(source), "--no-progress",
            "--set", "stop.timesteps=1", "--set", "metrics.port=0", "--set", "resources.envRunners=0",
            cwd=store,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
    for uri in doc["spec"]["input"]["uris"]:
        data = store / env / uri
        if not data.exists():
            rec = kuberl(
                "record", str(source / "checkpoints"), "--output", str(data), "--steps", "600", cwd=store
            )
            assert rec.returncode == 0, rec.stderr
        (cwd / uri).parent.mkdir(parents=True, exist_ok=True)
        (cwd / uri).symlink_to(data, target_is_directory=True)


def wait_listening(port: int, proc: subprocess.Popen[str], timeout: float = 300) -> None:
    """The documented order: the server first, then the clients (a client finding no server exits)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "kuberl serve exited before it listened"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise AssertionError(f"kuberl serve did not listen on {port} within {timeout} s")


def run_external(example: Path, sets: Sequence[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """`kuberl serve`, then the documented client stepping CartPole against it until training stops."""
    port = free_port()
    path = os.pathsep.join((str(ROOT / "trainer_image"), str(ROOT / "operator"), str(ROOT)))
    env = {**os.environ, "PYTHONPATH": path, "KUBERL_POLICY_SERVER_TOKEN": TOKEN}
    serve_args = [*sets, "--set", f"external.port={port}", "--run-dir", "run", "--no-progress"]
    server = subprocess.Popen(
        [sys.executable, "-m", "kuberl.cli", "serve", str(example), *serve_args],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_listening(port, server)
        client = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "external_cartpole_client.py"),
             "--address", f"http://127.0.0.1:{port}", "--seed", "1"],
            cwd=cwd, env=env, capture_output=True, text=True, timeout=400,
        )  # fmt: skip
        out, err = server.communicate(timeout=120)
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
    assert client.returncode == 0, client.stderr
    assert "stepped" in client.stdout
    return subprocess.CompletedProcess(server.args, server.returncode, out, err)


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs_evaluates_and_renders(
    example: Path,
    tmp_path: Path,
    recordings: Path,
) -> None:
    doc = yaml.safe_load(example.read_text())
    sets = budget(doc, example.name)
    if "input" in doc["spec"]:
        record_input(doc, tmp_path, recordings)
    if doc["spec"].get("external", {}).get("enabled"):
        res = run_external(example, sets, tmp_path)
    else:
        res = kuberl("run", str(example), *sets, "--run-dir", "run", "--no-progress", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    found = checkpoints(tmp_path / "run")
    assert found, f"no checkpoint under {tmp_path / 'run'}: {res.stdout}"
    ev = kuberl("evaluate", str(found[-1]), "--episodes", "1", cwd=tmp_path)
    assert ev.returncode == 0, ev.stderr
    stats = json.loads(ev.stdout)
    assert stats.get("episodes", stats.get("games")) == 1  # self-play evaluates games against a snapshot
    assert stats["iteration"] >= 1

    rd = kuberl("render", str(example), cwd=tmp_path, env={"KUBERL_POLICY_SERVER_TOKEN": TOKEN})
    assert rd.returncode == 0, rd.stderr
    kinds = [d["kind"] for d in yaml.safe_load_all(rd.stdout)]
    assert "RayJob" in kinds
    assert "ConfigMap" in kinds
