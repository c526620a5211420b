"""The Tune Trainable of one trial: the job's spec with the trial's values set, built into an Algorithm.

Checkpoints use kuberl's own format (complete only once its manifest is written, every file verified
on load) inside the directory Tune hands out, so PBT's exploit restores a whole algorithm (weights,
optimizer, observation filter, counters, random generators) and `kuberl evaluate` reads any trial's
checkpoint.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from ray import tune

from kuberl.algorithms.api import AlgorithmAPI
from kuberl.build import build_algorithm
from kuberl.spec import parse_job
from kuberl.spec.tune import trial_spec_doc
from kuberl.tune.space import flatten_result

log = logging.getLogger(__name__)


def trial_index(trial_id: str) -> int:
    """Tune numbers trials `<experiment>_00003`; the number offsets each trial's seed."""
    match = re.search(r"_(\d+)$", trial_id)
    return int(match.group(1)) if match else 0


def trial_document(
    job_doc: dict[str, Any], values: dict[str, Any], *, run_dir: str, index: int
) -> dict[str, Any]:
    """The RLTrainingJob one trial trains: the trial's values set, its own run directory and seed
    (seed + trial index, so repeated samples differ), and no metrics server of its own (trials would
    clash on the port; the experiment exports metrics instead)."""
    spec = trial_spec_doc(job_doc["spec"], values)
    spec["runDir"] = run_dir
    spec["resume"] = "never"
    spec["metrics"] = {"enabled": False}
    if spec.get("seed", 0) is not None:
        spec["seed"] = int(spec.get("seed", 0)) + index
    return {**job_doc, "spec": spec}


class KuberlTrainable(tune.Trainable):
    """One trial. `job_doc` is the whole RLTrainingJob document and `run_dir` the job's run directory
    (both bound with tune.with_parameters); `config` holds the trial's {field path: value}."""

    algo: AlgorithmAPI

    def setup(self, config: dict[Any, Any], **params: Any) -> None:
        self._job_doc: dict[str, Any] = params["job_doc"]
        self._job_run_dir = Path(params["run_dir"])
        self._build(config)

    def _build(self, config: dict[str, Any]) -> None:
        # trial_id and trial_name are this trial's also after reset_config (a reused actor).
        run_dir = self._job_run_dir / "trials" / self.trial_name
        doc = trial_document(self._job_doc, config, run_dir=str(run_dir), index=trial_index(self.trial_id))
        job = parse_job(doc, source=f"trial {self.trial_name}")
        self.algo = build_algorithm(job, run_dir=run_dir)

    def step(self) -> dict[str, Any]:
        return flatten_result(self.algo.train())

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        # A kuberl store rooted at Tune's directory: checkpoint_<iteration>/ with its manifest last.
        self.algo.save(checkpoint_dir)

    def load_checkpoint(self, checkpoint: Any) -> None:
        # The store root: its newest complete, verified checkpoint (PBT's exploit and experiment resume).
        self.algo.restore(str(checkpoint))
        log.info("%s restored iteration %d from %s", self.trial_name, self.algo.iteration, checkpoint)

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        # Rebuilding the algorithm in this actor is cheaper than a new actor (which imports torch again);
        # PBT then restores the exploited checkpoint into it.
        self.algo.stop()
        self._build(new_config)
        self.config = new_config
        return True

    def cleanup(self) -> None:
        algo = getattr(self, "algo", None)
        if algo is not None:
            algo.stop()
