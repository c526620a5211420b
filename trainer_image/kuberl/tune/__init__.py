"""Hyperparameter sweeps and Population Based Training of an RLTrainingJob with Ray Tune (docs/tune.md).

    space       spec.tune → Tune's search space, scheduler, stopper and trial resources (no I/O)
    trainable   the Tune Trainable that wraps an Algorithm (kuberl checkpoints, per-trial overrides)
    experiment  the driver: builds the Tuner, runs or resumes it, exports experiment metrics
    report      the results: one row per trial, the best trial, tune_results.json

`kuberl run job.yaml` runs a job with `spec.tune` through `run_tune`.
"""

from kuberl.tune.experiment import TuneOutcome, run_tune

__all__ = ["TuneOutcome", "run_tune"]
