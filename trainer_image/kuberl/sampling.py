"""Where a `kuberl run` samples: its env-runner Ray actors, or the driver process (`resources.localMode`).

The same job file runs on a laptop and on Kubernetes. On a Ray cluster (a pod, or RAY_ADDRESS set) the
job's `envRunners` actors always run: that is what the operator sized the cluster for. Locally, one env
runner in its own actor buys no parallelism over sampling in the driver (PPO samples, then learns, in
turn), but costs starting and stopping an embedded Ray, which is most of a short run's wall time. So
`localMode: auto` samples in the driver when the job asks for one runner and one learner. Pure logic:
the caller passes the environment.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kuberl.spec import RLTrainingJob


@dataclass(frozen=True)
class SamplingChoice:
    in_driver: bool  # True: the env runner samples in the driver (as envRunners: 0); no Ray started
    reason: str

    def describe(self) -> str:
        where = "in the driver process (no Ray)" if self.in_driver else "in Ray env-runner actors"
        return f"sampling {where}: {self.reason}"


def on_ray_cluster(environ: Mapping[str, str]) -> bool:
    """In a Kubernetes pod (the kubelet sets KUBERNETES_SERVICE_HOST in every container) or joining the
    Ray cluster named by RAY_ADDRESS (KubeRay sets it for RayJob entrypoints)."""
    return bool(environ.get("KUBERNETES_SERVICE_HOST") or environ.get("RAY_ADDRESS"))


def choose_sampling(job: RLTrainingJob, environ: Mapping[str, str], *, ray_running: bool) -> SamplingChoice:
    """The rule of `resources.localMode` (docs: README "Run locally"). `ray_running`: this process
    already joined Ray (a user's ray.init()), so actors cost no start-up."""
    spec = job.spec
    res = spec.resources
    if spec.external.enabled:
        return SamplingChoice(False, "spec.external: simulators connect to the policy server")
    if res.env_runners == 0:
        return SamplingChoice(True, "envRunners: 0")
    if on_ray_cluster(environ):
        return SamplingChoice(False, f"on a Ray cluster, envRunners: {res.env_runners}")
    if res.local_mode == "actors":
        return SamplingChoice(False, f"localMode: actors, envRunners: {res.env_runners}")
    if res.local_mode == "driver":  # the spec allows it only with envRunners ≤ 1
        return SamplingChoice(True, "localMode: driver")
    if res.env_runners > 1:
        return SamplingChoice(
            False, f"localMode: auto with envRunners: {res.env_runners} (parallel sampling)"
        )
    if res.learners > 1:
        return SamplingChoice(False, f"localMode: auto with learners: {res.learners} (Ray runs them anyway)")
    if spec.evaluation.num_env_runners:
        n = spec.evaluation.num_env_runners
        return SamplingChoice(
            False, f"localMode: auto with evaluation.numEnvRunners: {n} (Ray runs them anyway)"
        )
    if ray_running:
        return SamplingChoice(False, "localMode: auto, and this process already joined Ray")
    return SamplingChoice(
        True, "localMode: auto, a local run with one env runner (localMode: actors keeps the actor)"
    )


def resolve_sampling(
    job: RLTrainingJob, environ: Mapping[str, str] | None = None, *, ray_running: bool | None = None
) -> tuple[RLTrainingJob, SamplingChoice]:
    """The job as it will train (envRunners: 0 when it samples in the driver), and the choice.

    `environ` and `ray_running` default to this process's (os.environ; whether it already joined Ray)."""
    env = os.environ if environ is None else environ
    if ray_running is None:
        ray = sys.modules.get("ray")  # imported only if someone already uses Ray: importing it costs seconds
        ray_running = ray is not None and bool(ray.is_initialized())
    choice = choose_sampling(job, env, ray_running=ray_running)
    res = job.spec.resources
    if not choice.in_driver or res.env_runners == 0:
        return job, choice
    resources = res.model_copy(update={"env_runners": 0})
    spec = job.spec.model_copy(update={"resources": resources})
    return job.model_copy(update={"spec": spec}), choice


def in_driver(spec: dict[str, Any], **resources: Any) -> None:
    """Make a job document (`spec`, camelCase as checkpoints store it) play in this process without Ray
    actors, for the commands that replay a checkpoint's policy (evaluate, rollout, record, export): no
    env runners, learner GPUs or evaluation actors; `resources` are further resources fields to set."""
    spec["resources"] = {**spec.get("resources", {}), "envRunners": 0, "gpusPerLearner": 0, **resources}
    spec["evaluation"] = {**spec.get("evaluation", {}), "numEnvRunners": 0}
