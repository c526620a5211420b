"""The README's first command, `kuberl run examples/ppo-job.yaml`, as a user runs it: it samples in the
driver (no Ray to start), prints no warnings, and the same file rendered for Kubernetes keeps its
env-runner actor. Its speed is measured by bench/bench_startup.py, not here."""

from __future__ import annotations

import re
import shlex
import subprocess
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml

from kuberl.sampling import resolve_sampling
from kuberl.spec import load_job
from tests import cli

ROOT = Path(__file__).resolve().parents[2]
QUICK_START = ROOT / "examples" / "ppo-job.yaml"
# The variables that make a process a cluster member (kuberl.sampling.on_ray_cluster).
CLUSTER_VARS = ("RAY_ADDRESS", "KUBERNETES_SERVICE_HOST")


# Not a cluster member, whatever runs the tests: the quick start is a local run.
kuberl = partial(cli.kuberl, unset=CLUSTER_VARS)


def warning_lines(stderr: str) -> list[str]:
    # Python's warnings ("UserWarning: …"), logging's ("WARNING …") and Ray's ("… WARNING file.py:85 -- …").
    return [line for line in stderr.splitlines() if re.search(r"warn", line, re.IGNORECASE)]


def imported_modules(stderr: str) -> set[str]:
    """The modules `python -X importtime` listed."""
    lines = [line for line in stderr.splitlines() if line.startswith("import time:")]
    return {line.rsplit("|", 1)[1].strip() for line in lines}


def run_quick_start(
    tmp_path: Path, *sets: str, python: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    overrides = ["stop.iterations=1", f"runDir={tmp_path / 'run'}", "metrics.port=0", *sets]
    args = [a for s in overrides for a in ("--set", s)]
    return kuberl("run", str(QUICK_START), *args, cwd=tmp_path, python=python)


def test_quick_start_samples_in_the_driver_without_warnings(tmp_path: Path) -> None:
    res = run_quick_start(tmp_path, python=("-X", "importtime"))
    assert res.returncode == 0, res.stderr
    assert "sampling in the driver process (no Ray)" in res.stdout, res.stdout
    assert "done: iterations 1" in res.stdout, res.stdout
    stderr = "\n".join(line for line in res.stderr.splitlines() if not line.startswith("import time:"))
    assert warning_lines(stderr) == [], stderr
    assert "Traceback" not in stderr, stderr
    # What the run does not use, it does not import: Ray (seconds), botocore (tensorboardX's optional S3;
    # the blocked `import boto3` itself is listed, failing in microseconds), torch._dynamo (1.7 s; torch's
    # optimizers import it on their first zero_grad/state_dict, kuberl.core.optim.Adam does not), also
    # while writing the final checkpoint.
    imported = imported_modules(res.stderr)
    assert "torch" in imported, "importtime output not parsed"
    unused = {"ray", "botocore", "torch._dynamo"}
    assert imported.isdisjoint(unused), sorted(imported & unused)
    assert (tmp_path / "run" / "checkpoints").is_dir()
    assert list((tmp_path / "run").glob("events.out.tfevents.*")), "TensorBoard events are still written"
    # Resuming restores the optimizer's state (load_state_dict), without torch._dynamo either.
    again = run_quick_start(tmp_path, "stop.iterations=2", "resume=auto", python=("-X", "importtime"))
    assert again.returncode == 0, again.stderr
    assert "resumed from" in again.stdout, again.stdout
    assert "done: iterations 2" in again.stdout, again.stdout
    assert "torch._dynamo" not in imported_modules(again.stderr)


def test_runner_actors_print_no_warnings_either(tmp_path: Path) -> None:
    """localMode: actors starts an embedded Ray: its auth mode is set, and the read-only rollouts the actor
    returns are copied before torch sees them, so neither Ray nor torch warns."""
    res = run_quick_start(tmp_path, "resources.localMode=actors")
    assert res.returncode == 0, res.stderr
    assert "sampling in Ray env-runner actors" in res.stdout, res.stdout
    assert "done: iterations 1" in res.stdout, res.stdout
    assert warning_lines(res.stderr) == [], res.stderr


def rendered(tmp_path: Path) -> dict[str, dict[str, Any]]:
    res = kuberl("render", str(QUICK_START), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    return {d["kind"]: d for d in yaml.safe_load_all(res.stdout)}


def test_the_rendered_kubernetes_job_keeps_its_runner_actor(tmp_path: Path) -> None:
    docs = rendered(tmp_path)
    cluster = docs["RayJob"]["spec"]["rayClusterSpec"]
    # The cluster is sized for the actor: a worker group with room for envRunners × cpusPerRunner.
    (runners,) = [g for g in cluster["workerGroupSpecs"] if g["groupName"] == "env-runners"]
    assert runners["replicas"] >= 1
    # What the head pod's entrypoint trains: the ConfigMap's job with the entrypoint's --set overrides,
    # in the environment of that container plus what Kubernetes and KubeRay add to every such pod.
    (path, *rest) = shlex.split(docs["RayJob"]["spec"]["entrypoint"])[2:]
    overrides = [rest[i + 1] for i in range(0, len(rest), 2) if rest[i] == "--set"]
    spec_file = tmp_path / Path(path).name
    spec_file.write_text(docs["ConfigMap"]["data"][Path(path).name])
    job = load_job(spec_file, overrides)
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    environ = {e["name"]: e.get("value", "") for e in head.get("env", [])}
    environ |= {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "RAY_ADDRESS": "http://127.0.0.1:8265"}
    trained, choice = resolve_sampling(job, environ)
    assert not choice.in_driver, choice.describe()
    assert trained.spec.resources.env_runners == 1


@pytest.mark.parametrize("var", CLUSTER_VARS)
def test_either_cluster_variable_alone_keeps_the_actor(var: str) -> None:
    _, choice = resolve_sampling(load_job(QUICK_START), {var: "set"})
    assert not choice.in_driver, choice.describe()
