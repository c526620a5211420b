"""`kuberl render` as a user runs it: what the operator would create, and the same refusals as the operator
and `kuberl run` (exit 2, the field and the reason, no traceback)."""

from __future__ import annotations

import subprocess
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import cli

ROOT = Path(__file__).resolve().parents[2]
JOB = """apiVersion: kuberl.io/v1alpha1
kind: RLTrainingJob
metadata: {name: render-test, namespace: team-a}
spec:
  algorithm: PPO
  env: CartPole-v1
  stop: {iterations: 1}
  resources: {envRunners: 0}
"""


kuberl = partial(cli.kuberl, timeout=120)


def render(tmp_path: Path, *sets: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "job.yaml").write_text(JOB)
    return kuberl("render", "job.yaml", *[a for s in sets for a in ("--set", s)], cwd=tmp_path)


def test_render_prints_the_manifests(tmp_path: Path) -> None:
    res = render(tmp_path)
    assert res.returncode == 0, res.stderr
    docs: list[dict[str, Any]] = list(yaml.safe_load_all(res.stdout))
    assert [d["kind"] for d in docs] == ["ConfigMap", "NetworkPolicy", "RayJob"]
    assert all(d["metadata"]["namespace"] == "team-a" for d in docs)


@pytest.mark.parametrize(
    ("sets", "words"),
    [
        (["cluster.cpuWorkers.cpu=1Gi"], "spec.cluster.cpuWorkers.cpu: '1Gi' is in bytes"),
        (["cluster.cpuWorkers.cpu=-2"], "spec.cluster.cpuWorkers.cpu: '-2' must be at least 1m"),
        (["cluster.head.cpu=1K"], "spec.cluster.head.cpu: '1K' is not a Kubernetes quantity"),
        (["cluster.head.memory=512m"], "spec.cluster.head.memory: '512m' is in milli-bytes"),
        (
            ["cluster.cpuWorkers.cpu=0", "tune.numSamples=2"],
            "spec.cluster.cpuWorkers.cpu: '0' must be at least 1m",
        ),
    ],
)
def test_render_refuses_bad_quantities(tmp_path: Path, sets: list[str], words: str) -> None:
    res = render(tmp_path, *sets)
    assert res.returncode == 2, res.stderr
    assert words in " ".join(res.stderr.split()), res.stderr
    assert "Traceback" not in res.stderr
    assert not res.stdout.strip()


def test_run_refuses_a_bad_quantity_too(tmp_path: Path) -> None:
    (tmp_path / "job.yaml").write_text(JOB)
    res = kuberl("run", "job.yaml", "--set", "cluster.cpuWorkers.cpu=1Gi", cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert "spec.cluster.cpuWorkers.cpu: '1Gi' is in bytes" in " ".join(res.stderr.split())
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "runs").exists()
