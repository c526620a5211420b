"""`kuberl serve JOB.yaml`: the real CLI process serves the policy, a client drives it, training ends."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

from kuberl import PolicyClient
from kuberl.external.client import PolicyServerUnavailable
from kuberl.spec.external import TOKEN_ENV
from tests.integration.test_external_server import play

ROOT = Path(__file__).resolve().parents[2]


def serve(tmp_path: Path, env: dict[str, str], *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable, "-m", "kuberl.cli", "serve", str(ROOT / "examples" / "ppo-external.yaml"),
            "--no-progress", f"--run-dir={tmp_path}",
            "--set", "external.port=0", "--set", "stop.iterations=2", "--set", "config.train_batch_size=200",
            "--set", "config.minibatch_size=50", "--set", "resume=never", "--set", "metrics.port=0",
            *extra,
        ],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def test_kuberl_serve_trains_from_a_client(tmp_path: Path) -> None:
    env = {**os.environ, TOKEN_ENV: "cli-token"}
    proc = serve(tmp_path, env, "--set", "external.enabled=false")  # serve turns it on regardless
    assert proc.stdout is not None
    lines: list[str] = []
    url = None
    for line in proc.stdout:
        lines.append(line)
        m = re.search(r"policy server: (http://\S+)", line)
        if m:
            url = m.group(1)
            break
    assert url, "".join(lines)

    def simulate() -> None:
        try:
            with PolicyClient(url, token="cli-token") as c:
                while True:
                    play(c, 1, seed=0)
        except PolicyServerUnavailable:
            pass  # the run finished and the server stopped

    sim = threading.Thread(target=simulate, daemon=True)
    sim.start()
    rest, _ = proc.communicate(timeout=300)
    sim.join(timeout=30)
    out = "".join(lines) + rest
    assert proc.returncode == 0, out
    assert "iterations 2" in out


def test_kuberl_serve_without_a_token_is_a_user_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    proc = serve(tmp_path, env, "--set", "external.tokenSecret=null")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2, out
    assert "spec.external" in out
    assert "bearer token" in out
