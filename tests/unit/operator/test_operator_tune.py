"""A spec.tune job on Kubernetes: the same entrypoint, and a Ray cluster sized for maxConcurrentTrials
trials (golden manifest, validated against KubeRay's RayJob CRD like the others)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import yaml

from kuberl.spec import parse_job, read_document
from kuberl.spec.tune import trial_cpus
from kuberl_operator.builders import build_config_map, build_ray_job, cpu_worker_replicas, head_gpus

ROOT = Path(__file__).resolve().parents[3]
GOLDEN = Path(__file__).parent / "golden" / "tune_pbt.yaml"


def _pbt_job(**resources: Any) -> Any:
    doc = read_document(ROOT / "examples" / "ppo-pbt.yaml")
    doc["metadata"].update({"namespace": "team-a", "uid": "1234-abcd"})
    doc["spec"]["resources"].update(resources)
    doc["spec"]["checkpoint"] = {"uri": "s3://rl-checkpoints/ppo-pbt"}
    return parse_job(doc)


def test_golden_tune_job() -> None:
    job = _pbt_job()
    text = yaml.safe_dump_all(
        [build_config_map(job, attempt=0), build_ray_job(job, attempt=0, resume="auto")], sort_keys=False
    )
    if os.environ.get("KUBERL_UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), f"differs from {GOLDEN} (KUBERL_UPDATE_GOLDEN=1 regenerates it)"


def test_tune_ray_job_validates_against_kuberay(rayjob_validator: Any) -> None:
    manifest = build_ray_job(_pbt_job(), attempt=1, resume="auto")
    errors = sorted(rayjob_validator.iter_errors(manifest), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_workers_are_sized_for_concurrent_trials() -> None:
    job = _pbt_job()
    t = job.spec.tune
    assert t is not None
    # examples/ppo-pbt.yaml: 4 trials at once, each 1 CPU (trial actor) + 1 env runner, on 2-CPU pods
    assert trial_cpus(job.spec.resources) == 2.0
    assert cpu_worker_replicas(job) == math.ceil(4 * 2.0 / 2) == 4
    group = build_ray_job(job, attempt=0, resume="auto")["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    assert group["groupName"] == "env-runners"
    assert group["replicas"] == group["minReplicas"] == group["maxReplicas"] == 4
    # Trials that sample in their own process still need a CPU each, off the head.
    assert cpu_worker_replicas(_pbt_job(envRunners=0)) == 2
    # GPU learners run in the trial actors; the head is the GPU node, with one share per concurrent trial.
    assert head_gpus(_pbt_job(gpusPerLearner=0.5)) == 2
    assert head_gpus(_pbt_job()) == 0


def test_the_same_entrypoint_reads_the_tune_section() -> None:
    job = _pbt_job()
    manifest = build_ray_job(job, attempt=0, resume="auto")
    assert manifest["spec"]["entrypoint"] == "kuberl run /etc/kuberl/job.yaml --set resume=auto"
    doc = yaml.safe_load(build_config_map(job, attempt=0)["data"]["job.yaml"])
    again = parse_job(doc)
    assert again.spec.tune == job.spec.tune


def test_a_huge_tune_domain_is_refused_at_once_naming_the_field() -> None:
    """#16: a 100,000-value gridSearch took seconds per parse on the operator's event loop, every pass.
    Now the list is capped (MAX_DOMAIN_VALUES, also maxItems in the CRD) and the job fails at once with
    Valid=False naming the field; the parse cache keeps it from being parsed again."""
    import asyncio
    import sys
    import time

    import kopf
    import pytest

    from kuberl.spec.tune import MAX_DOMAIN_VALUES
    from kuberl_operator import reconcile

    sys.path.insert(0, str(Path(__file__).parent))
    from fakes import FakeApi, make_context

    doc = read_document(ROOT / "examples" / "ppo-pbt.yaml")
    doc["metadata"].update({"namespace": "team-a", "uid": "u-big", "generation": 1})
    doc["spec"]["tune"]["paramSpace"] = {
        "config.lr": {"gridSearch": [1e-5 * (i + 1) for i in range(100_000)]}
    }
    api, events = FakeApi(), []
    ctx = make_context(api, events)
    start = time.process_time()
    for _ in range(3):  # create, then two more passes over the same generation
        with pytest.raises(kopf.PermanentError):
            asyncio.run(reconcile.create(ctx, doc))
    assert time.process_time() - start < 2.0
    assert ctx.parsed.misses == 1
    valid = next(c for c in api.statuses[-1]["conditions"] if c["type"] == "Valid")
    assert valid["message"].startswith("spec.tune.paramSpace.config.lr.gridSearch:")
    assert str(MAX_DOMAIN_VALUES) in valid["message"]
    assert not api.objects
