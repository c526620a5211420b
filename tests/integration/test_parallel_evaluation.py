"""evaluation.parallelToTraining (RLlib's evaluation_parallel_to_training): the evaluation launched at
the end of an iteration runs while the next iterations train. Shown by causality, not timing: the
evaluation envs cannot reset until the test opens their gate, yet training iterations complete; once
the gate is open, the statistics arrive in a later result, naming the iteration whose weights played."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kuberl import build_algorithm

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def test_training_does_not_wait_for_evaluation(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    doc = yaml.safe_load((ROOT / "examples" / "ppo-job.yaml").read_text())
    spec = doc["spec"]
    spec.update(
        {
            "env": "tests.envs:make_gated_cartpole",
            "envConfig": {},
            "runDir": str(tmp_path / "run"),
            "seed": 0,
            "resources": {"envRunners": 0, "envsPerRunner": 2},
            "evaluation": {"interval": 1, "episodes": 3, "parallelToTraining": True, "envConfig": {"gate": str(gate)}},
        }
    )  # fmt: skip
    spec["config"].update({"train_batch_size": 128, "minibatch_size": 64, "num_epochs": 1})
    algo = build_algorithm(doc)
    try:
        # The evaluation launched after iteration 1 is stuck at its first reset: no result can hold it,
        # and iterations 2-4 still finish (the due evaluations of 2-4 are skipped, one runs at a time).
        for it in range(1, 5):
            result = algo.train()
            assert result["training_iteration"] == it
            assert "evaluation" not in result
        gate.touch()
        assert algo.background_evaluation is not None
        algo.background_evaluation.wait(timeout=300)
        result = algo.train()
        ev = result["evaluation"]
        assert result["training_iteration"] == 5
        assert ev["weights_iteration"] == 1, "it played with the weights of the iteration that launched it"
        assert ev["episodes"] == 3
        assert ev["episode_return_mean"] is not None
        # Iteration 5 launched the next one (with its weights); it reaches a later result.
        algo.background_evaluation.wait(timeout=300)
        assert algo.train()["evaluation"]["weights_iteration"] == 5
    finally:
        gate.touch()  # a stuck evaluation would keep stop() waiting
        algo.stop()


def test_sequential_evaluation_is_unchanged(tmp_path: Path) -> None:
    """Without parallelToTraining the evaluation is in the result of the iteration that is due."""
    doc = yaml.safe_load((ROOT / "examples" / "ppo-job.yaml").read_text())
    doc["spec"].update(
        {"runDir": str(tmp_path / "run"), "seed": 0, "resources": {"envRunners": 0, "envsPerRunner": 2},
         "evaluation": {"interval": 2, "episodes": 2}}
    )  # fmt: skip
    doc["spec"]["config"].update({"train_batch_size": 128, "minibatch_size": 64, "num_epochs": 1})
    algo = build_algorithm(doc)
    try:
        assert "evaluation" not in algo.train()
        ev = algo.train()["evaluation"]
        assert ev["episodes"] == 2
        assert "weights_iteration" not in ev
    finally:
        algo.stop()
