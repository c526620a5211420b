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
from typing import TYPE_CHECKING, Any

from kuberl.algorithms.api import AlgorithmAPI
from kuberl.algorithms.base import Algorithm, Parts
from kuberl.algorithms.registry import algorithm_class
from kuberl.core.runner_group import RunnerGroup
from kuberl.spec import RLTrainingJob, RLTrainingJobSpec, load_job, parse_job
from kuberl.spec.common import ResourcesSpec

if TYPE_CHECKING:  # the writer imports pyarrow: only jobs with spec.output load it (_writer)
    from kuberl.core.offline.writer import ExperienceWriter, Writer

__all__ = ["algorithm_class", "build_algorithm", "build_single_agent", "parts_for"]


def build_algorithm(
    job: RLTrainingJob | Mapping[str, Any] | str | Path, *, run_dir: Path | None = None
) -> AlgorithmAPI:
    """Build an algorithm from a job object, a raw document, or a YAML path: a MultiAgentAlgorithm (one
    Algorithm per policy) for `spec.multiAgent`, the job's Algorithm otherwise."""
    job = _job(job)
    if job.spec.multi_agent is not None:
        from kuberl.multi_agent.algorithm import MultiAgentAlgorithm

        return MultiAgentAlgorithm(job, run_dir=run_dir)
    return build_single_agent(job, run_dir=run_dir)


def build_single_agent(
    job: RLTrainingJob | Mapping[str, Any] | str | Path, *, run_dir: Path | None = None
) -> Algorithm:
    """The job's single-agent Algorithm, for commands that sample or play its one policy's env (rollout,
    record); a ValueError for a multi-agent job."""
    job = _job(job)
    if job.spec.multi_agent is not None:
        raise ValueError("a multi-agent job: this command plays single-agent policies")
    return algorithm_class(job.spec.algorithm)(job, run_dir=run_dir, parts=parts_for(job.spec))


def _job(job: RLTrainingJob | Mapping[str, Any] | str | Path) -> RLTrainingJob:
    if isinstance(job, str | Path):
        return load_job(job)
    return job if isinstance(job, RLTrainingJob) else parse_job(job)


def parts_for(spec: RLTrainingJobSpec) -> Parts:
    """The runner group, writer, learner group and Ray CPUs of a single-agent job."""
    res = spec.resources
    external = spec.external.enabled
    # The policy server stands in for the env runners: no runner actors then.
    runner_cpus = 0.0 if external else res.env_runners * res.cpus_per_runner
    learner_cpus = res.learners * res.cpus_per_learner if res.learners > 1 else 0.0
    # Evaluation actors only where the env runners are Ray actors: a job that samples in the driver
    # (envRunners: 0, or localMode's choice; kuberl.sampling) evaluates there too.
    evaluation_runners = spec.evaluation.num_env_runners if runner_cpus > 0 else 0
    ray_cpus = runner_cpus + learner_cpus + evaluation_runners * res.cpus_per_runner
    return Parts(
        runner_group=_external_runner_group if external else None,
        writer=(_episode_writer if external else _writer) if spec.output is not None else None,
        learner_group=partial(_learner_group, resources=res, seed=spec.seed) if res.learners > 1 else None,
        ray_cpus=ray_cpus if ray_cpus > 0 else None,
        evaluation_runners=evaluation_runners,
    )


def _writer(algo: Algorithm) -> ExperienceWriter:
    from kuberl.core.offline.writer import ExperienceWriter

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


def _learner_group(learner: Any, *, resources: ResourcesSpec, seed: int | None) -> Any:
    """Data-parallel DDP learners in place of the one setup() built (docs/algorithms/ppo.md)."""
    from kuberl.core.learner_group import LearnerGroup

    return LearnerGroup(learner, resources=resources, seed=seed)
