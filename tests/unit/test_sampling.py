"""resources.localMode: where a `kuberl run` samples (kuberl.sampling) — in the driver for a local run
with one env runner, in Ray actors on a cluster or when asked for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kuberl.sampling import choose_sampling, resolve_sampling
from kuberl.spec import SpecError, load_job, parse_job

ROOT = Path(__file__).resolve().parents[2]
LOCAL: dict[str, str] = {"HOME": "/home/me", "PATH": "/usr/bin"}
POD = {**LOCAL, "KUBERNETES_SERVICE_HOST": "10.96.0.1"}
RAYJOB = {**LOCAL, "RAY_ADDRESS": "http://head:8265"}


def job(**resources: Any) -> Any:
    return parse_job(
        {
            "apiVersion": "kuberl.io/v1alpha1",
            "kind": "RLTrainingJob",
            "metadata": {"name": "t"},
            "spec": {"algorithm": "PPO", "env": "CartPole-v1", "resources": resources},
        }
    )


@pytest.mark.parametrize(
    ("resources", "environ", "in_driver"),
    [
        ({"envRunners": 1}, LOCAL, True),  # the quick start
        ({"envRunners": 1}, POD, False),  # the same file on Kubernetes keeps its actor
        ({"envRunners": 1}, RAYJOB, False),  # a RayJob entrypoint joins the cluster
        ({"envRunners": 1, "localMode": "driver"}, POD, False),  # localMode is about local runs only
        ({"envRunners": 1, "localMode": "actors"}, LOCAL, False),
        ({"envRunners": 0, "localMode": "driver"}, LOCAL, True),
        ({"envRunners": 0}, POD, True),  # envRunners: 0 means the driver everywhere, as before
        ({"envRunners": 2}, LOCAL, False),  # several runners sample in parallel
        ({"envRunners": 1, "learners": 2}, LOCAL, False),  # Ray runs the learners anyway
    ],
)
def test_rule(resources: dict[str, Any], environ: dict[str, str], in_driver: bool) -> None:
    choice = choose_sampling(job(**resources), environ, ray_running=False)
    assert choice.in_driver is in_driver, choice.describe()


def test_a_process_already_in_ray_keeps_the_actor() -> None:
    assert not choose_sampling(job(envRunners=1), LOCAL, ray_running=True).in_driver


def test_external_jobs_keep_their_policy_server() -> None:
    doc = job(envRunners=1).to_wire()
    doc["spec"]["external"] = {"enabled": True}
    choice = choose_sampling(parse_job(doc), LOCAL, ray_running=False)
    assert not choice.in_driver
    assert "policy server" in choice.reason


def test_resolve_trains_the_quick_start_without_runner_actors() -> None:
    written = load_job(ROOT / "examples" / "ppo-job.yaml")
    # ray_running given: whether this test process joined Ray depends on the tests that ran before it.
    trained, choice = resolve_sampling(written, LOCAL, ray_running=False)
    assert choice.in_driver
    assert "localMode: auto" in choice.describe()
    assert trained.spec.resources.env_runners == 0
    # The envs sampled per iteration are the same: one runner's envsPerRunner, now in the driver.
    assert trained.spec.resources.envs_per_runner == written.spec.resources.envs_per_runner == 16
    assert written.spec.resources.env_runners == 1, (
        "the job as written (params.json, the cluster) is untouched"
    )
    assert trained.spec.config == written.spec.config
    assert trained.spec.stop == written.spec.stop


def test_resolve_on_a_cluster_returns_the_job_as_written() -> None:
    written = load_job(ROOT / "examples" / "ppo-job.yaml")
    trained, choice = resolve_sampling(written, POD)
    assert trained is written
    assert not choice.in_driver


def test_driver_with_several_runners_is_a_spec_error() -> None:
    with pytest.raises(SpecError) as err:
        job(envRunners=3, localMode="driver")
    assert "spec.resources.localMode" in str(err.value)
    assert "envRunners is 3" in str(err.value)


def test_unknown_local_mode_is_a_spec_error() -> None:
    with pytest.raises(SpecError) as err:
        job(envRunners=1, localMode="ray")
    assert "spec.resources.localMode" in str(err.value)


def test_evaluation_actors_make_a_local_run_use_ray() -> None:
    """One env runner locally would sample in the driver, but the evaluation actors need Ray anyway."""
    doc = job(envRunners=1).model_dump(mode="json", by_alias=True, exclude_unset=True)
    doc["spec"]["evaluation"] = {"interval": 1, "numEnvRunners": 2}
    trained, choice = resolve_sampling(parse_job(doc), LOCAL, ray_running=False)
    assert not choice.in_driver
    assert choice.reason == "localMode: auto with evaluation.numEnvRunners: 2 (Ray runs them anyway)"
    assert trained.spec.resources.env_runners == 1
