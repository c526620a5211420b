"""QMIX samples on its Ray env runners when the job asks for them (resources.envRunners), through
`kuberl run` as users start it: two joint runner actors each step their own envsPerRunner envs, the
learner's weights reach them every iteration, and the team still learns the two-step game's optimum."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli import ROOT, kuberl

RUNNERS, ENVS = 2, 8
OPTIMAL = 16.0


def test_qmix_samples_on_its_env_runner_actors_and_learns(tmp_path: Path) -> None:
    proc = kuberl(
        "run", str(ROOT / "examples" / "qmix-two-step.yaml"),
        "--set", f"resources.envRunners={RUNNERS}", "--set", "resources.localMode=actors",
        "--set", f"resources.envsPerRunner={ENVS}",
        # Twice the example's samples per iteration: twice its gradient steps keeps the same replay ratio.
        "--set", "config.num_updates_per_iteration=2", "--set", "stop.timesteps=6000",
        "--set", "evaluation.interval=0", "--set", "metrics.enabled=false",
        "--run-dir", "run", "--no-progress",
        cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "sampling in Ray env-runner actors" in proc.stdout + proc.stderr
    results = [json.loads(line) for line in (tmp_path / "run" / "result.json").read_text().splitlines()]
    # Every iteration: one fragment (rolloutFragmentLength 1) of every env of both runners.
    assert {r["num_env_steps_sampled"] for r in results} == {RUNNERS * ENVS}
    assert {r["env_runners"]["num_healthy"] for r in results} == {RUNNERS}
    proc = kuberl(
        "evaluate", str(tmp_path / "run" / "checkpoints"), "--episodes", "1", cwd=tmp_path, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"{OPTIMAL}" in proc.stdout, proc.stdout[-2000:]
