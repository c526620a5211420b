"""A stop signal ends an external-simulator run promptly, even while no client sends anything.

`sample()` waits for clients' experience; before the trainer's signal handler interrupted that wait, a
SIGTERM (a pod stop) or Ctrl-C took effect only when the next train batch arrived, so with no client
the process ran until it was killed. These tests run the real `kuberl serve` process.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from kuberl import PolicyClient
from kuberl.checkpoint import open_store
from kuberl.external.client import PolicyServerUnavailable
from kuberl.spec.external import TOKEN_ENV
from tests.integration.test_external_server import play

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "shutdown-token"
# Signal to exit: the trainer polls its stop flag every 0.25 s; the rest is checkpointing and teardown.
PROMPT_S = 5.0


def serve(tmp_path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable, "-m", "kuberl.cli", "serve", str(ROOT / "examples" / "ppo-external.yaml"),
            "--no-progress", f"--run-dir={tmp_path}",
            "--set", "external.port=0", "--set", "stop.iterations=1000", "--set", "stop.timesteps=null",
            "--set", "config.train_batch_size=200", "--set", "config.minibatch_size=50",
            "--set", "checkpoint.everyIterations=0",  # the only checkpoint is the one taken at the stop
            "--set", "resume=never", "--set", "metrics.port=0",
        ],
        env={**os.environ, TOKEN_ENV: TOKEN},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def read_until(proc: subprocess.Popen[str], pattern: str, lines: list[str]) -> re.Match[str]:
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        m = re.search(pattern, line)
        if m:
            return m
    raise AssertionError(f"no {pattern!r} in the output:\n{''.join(lines)}")


def stop_and_time(proc: subprocess.Popen[str], lines: list[str]) -> float:
    t = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=60)
    lines.append(rest)
    return time.monotonic() - t


def test_sigterm_with_no_client_ever_exits_at_once(tmp_path: Path) -> None:
    lines: list[str] = []
    proc = serve(tmp_path)
    try:
        read_until(proc, r"policy server: (http://\S+)", lines)
        time.sleep(1.0)  # the trainer is now blocked in sample()
        took = stop_and_time(proc, lines)
    finally:
        proc.kill()
    out = "".join(lines)
    assert proc.returncode == 130, out  # EXIT_INTERRUPTED, as any interrupted run
    assert took < PROMPT_S, f"{took:.1f} s\n{out}"
    assert "interrupted: signal SIGTERM" in out
    # Nothing was trained, so, as for an env-runner job stopped in its first iteration, no checkpoint.
    assert open_store(str(tmp_path / "checkpoints")).list() == []
    assert "Traceback" not in out  # the interrupted wait is not reported as a fault


def test_sigterm_after_the_clients_left_checkpoints_and_exits(tmp_path: Path) -> None:
    lines: list[str] = []
    proc = serve(tmp_path)
    stop_client = threading.Event()
    try:
        url = read_until(proc, r"policy server: (http://\S+)", lines).group(1)

        def simulate() -> None:
            try:
                with PolicyClient(url, token=TOKEN) as c:
                    while not stop_client.is_set():
                        play(c, 1, seed=0)
            except PolicyServerUnavailable:
                pass

        sim = threading.Thread(target=simulate, daemon=True)
        sim.start()
        read_until(proc, r"iter\s+2\s", lines)
        stop_client.set()
        sim.join(timeout=30)
        assert not sim.is_alive()
        time.sleep(1.0)  # no client connected; the trainer waits for a batch that will never come
        took = stop_and_time(proc, lines)
    finally:
        stop_client.set()
        proc.kill()
    out = "".join(lines)
    assert proc.returncode == 130, out
    assert took < PROMPT_S, f"{took:.1f} s\n{out}"
    results = [json.loads(line) for line in (tmp_path / "result.json").read_text().splitlines()]
    trained = results[-1]["training_iteration"]
    assert trained >= 2
    # The final checkpoint, as the SIGTERM path of any job takes it: complete (manifest last) and at
    # the last finished iteration; the interrupted wait changed nothing.
    checkpoints = open_store(str(tmp_path / "checkpoints")).list()
    assert [c.iteration for c in checkpoints] == [trained], out
    loaded = open_store(str(tmp_path / "checkpoints")).load_latest()
    assert loaded is not None
    assert loaded.info.iteration == trained
    assert loaded.info.timesteps == results[-1]["timesteps_total"]
    assert f"checkpoint: {checkpoints[0].uri}" in out.replace("\n", "")
