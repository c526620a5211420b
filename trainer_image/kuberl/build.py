"""job -> Algorithm: the one place that knows which parts a job needs.

The Algorithm base class trains over whatever runner group, writer and learner it is given; this
module picks them from the spec: env runners or the policy server of external simulators
(`spec.external`), the Parquet writer behind `spec.output` (whole episodes for external runs),
data-parallel learners (`resources.learners > 1`), and the Ray CPUs all of those reserve. A job with
`spec.multiAgent` becomes a MultiAgentAlgorithm, which builds one Algorithm per trained policy.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

from kuberl.algorithms.base import Algorithm, Parts
from kuberl.algorithms.registry import algorithm_class
from kuberl.core.offline.writer import ExperienceWriter, Writer
from kuberl.core.runner_group import RunnerGroup
from kuberl.spec import RLTrainingJob, RLTrainingJobSpec, load_job, parse_job
from kuberl.spec.common import ResourcesSpec

__all__ = ["algorithm_class", "build_algorithm", "parts_for"]


def build_algorithm(
    job: RLTrainingJob | Mapping[str, Any] | str | Path, *, run_dir: Path | None = None
) -> Algorithm:
    """Build an algorithm from a job object, a raw document, or a YAML path."""
    if isinstance(job, str | Path):
        job = load_job(job)
    elif not isinstance(job, RLTrainingJob):
        job = parse_job(job)
    if job.spec.multi_agent is not None:
        from kuberl.multi_agent.algorithm import MultiAgentAlgorithm

        return MultiAgentAlgorithm(job, run_dir=run_dir)
    return algorithm_class(job.spec.algorithm)(job, run_dir=run_dir, parts=parts_for(job.spec))


def parts_for(spec: RLTrainingJobSpec) -> Parts:
    """The runner group, writer, learner group and Ray CPUs of a single-agent job."""
    res = spec.resources
    external = spec.external.enabled
    # The policy server stands in for the env runners: no runner actors then.
    runner_cpus = 0.0 if external else res.env_runners * res.cpus_per_runner
    learner_cpus = res.learners * res.cpus_per_learner if res.learners > 1 else 0.0
    return Parts(
        runner_group=_external_runner_group if external else None,
        writer=(_episode_writer if external else _writer) if spec.output is not None else None,
        learner_group=partial(_learner_group, resources=res) if res.learners > 1 else None,
        ray_cpus=runner_cpus + learner_cpus if runner_cpus + learner_cpus > 0 else None,
    )


def _writer(algo: Algorithm) -> ExperienceWriter:
    assert algo.spec.output is not None
    return ExperienceWriter(
        algo.spec.output, algo.obs_space, algo.action_space, filtered=algo.obs_filter is not None
    )


def _episode_writer(algo: Algorithm) -> Writer:
    """External runs record whole episodes, not the policy server's one-lane training batches."""
    from kuberl.external.recording import EpisodeRecorder

    return EpisodeRecorder(_writer(algo))


def _external_runner_group(algo: Algorithm) -> RunnerGroup:
    from kuberl.external.runner_group import external_runner_group

    return external_runner_group(algo)


def _learner_group(learner: Any, *, resources: ResourcesSpec) -> Any:
    """Data-parallel DDP learners in place of the one setup() built (docs/algorithms/ppo.md)."""
    from kuberl.core.learner_group import LearnerGroup

    return LearnerGroup(learner, resources=resources)
