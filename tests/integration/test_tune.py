"""spec.tune end to end on real Ray Tune: a grid sweep through `kuberl run`, a sweep that must find the
learning rate that learns, PBT exploiting a checkpoint, ASHA stopping the bad trial. Ray starts once
for the module (two CPUs: two one-CPU trials at a time, env runners in the trial's process)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kuberl.cli import main
from kuberl.spec import apply_overrides, parse_job, read_document
from kuberl.tune import run_tune
from tests.learning.common import SEED

ROOT = Path(__file__).resolve().parents[2]
# A tiny budget: ~1,000 env steps per iteration, sampled in the trial's own process.
SMALL = [
    "config.train_batch_size=1024",
    "config.minibatch_size=256",
    "config.num_epochs=4",
    "resources.envRunners=0",
    "resources.envsPerRunner=8",
    "metrics.port=0",
    "resume=never",
]
BAD_LR = 1e-7  # no visible learning in a few thousand steps
GOOD_LR = 0.003  # learns on examples/ppo-job.yaml's settings (its own lr until 2026-12-03; now 0.005)


@pytest.fixture(scope="module", autouse=True)
def ray_module() -> Iterator[None]:
    import ray

    from kuberl.core.ray_init import ensure_ray

    ensure_ray(2)
    yield
    ray.shutdown()


def tune_job(tmp_path: Path, tune: dict[str, Any], *overrides: str, name: str = "ppo-job.yaml") -> Any:
    doc = apply_overrides(read_document(ROOT / "examples" / name), [*SMALL, f"runDir={tmp_path}", *overrides])
    doc["spec"].pop("tune", None)
    doc["spec"]["tune"] = tune
    return doc


def trial_results(experiment: Path) -> dict[str, list[dict[str, Any]]]:
    """Every result each trial reported, from Tune's own per-trial result.json."""
    out: dict[str, list[dict[str, Any]]] = {}
    for f in sorted(experiment.glob("*/result.json")):
        rows = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
        if rows:
            out[rows[0]["trial_id"]] = rows
    return out


def test_grid_over_two_learning_rates_through_kuberl_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    doc = tune_job(
        tmp_path / "run",
        {"paramSpace": {"config.lr": {"gridSearch": [GOOD_LR, BAD_LR]}}},
        "stop.iterations=2",
        "stop.timesteps=null",
        "stop.episodeReturnMean=null",
    )
    job_file = tmp_path / "job.yaml"
    job_file.write_text(yaml.safe_dump(doc))
    assert main(["run", str(job_file), "--no-progress"]) == 0
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "run" / "tune_results.json").read_text())
    trials = summary["trials"]
    assert sorted(t["params"]["config.lr"] for t in trials) == [BAD_LR, GOOD_LR]
    assert all(t["status"] == "TERMINATED" and t["iterations"] == 2 for t in trials), trials
    assert all(t["timesteps"] == 2048 for t in trials), trials
    best = summary["best"]
    assert best["last"] == max(t["last"] for t in trials)
    assert f"best trial {best['trial_id']}" in out
    assert "config.lr" in out
    assert " done " in out  # the status column
    # The best checkpoint is a kuberl checkpoint: complete, verified, at the trial's last iteration.
    from kuberl.checkpoint import load_checkpoint

    loaded = load_checkpoint(best["checkpoint"])
    assert loaded.info.metadata["iteration"] == 2
    # Each trial trained its own job: the value, seed + trial index and run directory, also when Tune
    # reused one actor for both (reset_config).
    jobs = {
        t["trial_id"]: json.loads(load_checkpoint(t["checkpoint"]).files["job.json"])["spec"] for t in trials
    }
    for trial_id, spec in jobs.items():
        index = int(trial_id.rsplit("_", 1)[1])
        assert spec["seed"] == index  # examples/ppo-job.yaml has seed 0
        assert trial_id in spec["runDir"]
        assert spec["metrics"] == {"enabled": False}
    assert len({spec["runDir"] for spec in jobs.values()}) == 2
    assert sorted(spec["config"]["lr"] for spec in jobs.values()) == [BAD_LR, GOOD_LR]
    # Each trial ran with its own value (Tune's record of the config the trial trained with).
    results = trial_results(Path(summary["experiment_path"]))
    assert sorted(rows[-1]["config"]["config.lr"] for rows in results.values()) == [BAD_LR, GOOD_LR]


@pytest.mark.learning
def test_sweep_finds_the_learning_rate_that_learns(tmp_path: Path) -> None:
    """A learning rate that learns on examples/ppo-job.yaml (GOOD_LR) against one that cannot: the sweep's
    best trial is GOOD_LR's and reaches the threshold within the budget."""
    threshold, budget = 150.0, 40_960
    doc = tune_job(
        tmp_path,
        {"paramSpace": {"config.lr": {"gridSearch": [BAD_LR, GOOD_LR]}}},
        "config.train_batch_size=2048",
        "config.minibatch_size=512",
        "config.num_epochs=6",
        f"stop.episodeReturnMean={threshold}",
        f"stop.timesteps={budget}",
        "checkpoint.everyIterations=0",
        f"seed={SEED}",
    )
    outcome = run_tune(parse_job(doc))
    assert outcome.best is not None
    assert outcome.best.params == {"config.lr": GOOD_LR}, outcome.trials
    assert outcome.best.last is not None
    assert outcome.best.last >= threshold, outcome.trials
    assert outcome.best.timesteps <= budget
    bad = next(t for t in outcome.trials if t.params["config.lr"] == BAD_LR)
    assert bad.best is not None
    assert bad.best < threshold, outcome.trials


def test_pbt_exploits_a_checkpoint_and_mutates_the_config(tmp_path: Path) -> None:
    """Two trials that sample at different rates (512 and 1,024 env steps per iteration): after an
    exploit, the exploiting trial's step counter continues the checkpoint it copied, which its own
    history could not produce."""
    doc = tune_job(
        tmp_path,
        {
            "paramSpace": {"config.train_batch_size": {"gridSearch": [1024, 512]}},
            "scheduler": {
                "type": "PBT",
                "pbt": {
                    "perturbationInterval": 2,
                    "quantileFraction": 0.5,
                    "resampleProbability": 0.0,
                    "synch": True,  # both trials meet at every perturbation point, whichever ran first
                    # lr is not in paramSpace: PBT draws each trial's first value from here
                    "hyperparamMutations": {"config.lr": {"loguniform": [1e-4, 1e-2]}},
                },
            },
        },
        "stop.iterations=6",
        "stop.timesteps=null",
        "stop.episodeReturnMean=null",
    )
    outcome = run_tune(parse_job(doc))
    experiment = Path(outcome.experiment_path)
    results = trial_results(experiment)
    by_index = {int(trial_id.rsplit("_", 1)[1]): trial_id for trial_id in results}
    # PBT's own record of each exploit: [target tag, clone tag, target iteration, clone iteration,
    # clone config, new config]; a tag starts with the trial's index.
    exploits = [
        json.loads(line) for line in (experiment / "pbt_global.txt").read_text().splitlines() if line.strip()
    ]
    assert exploits, "no trial exploited another"
    target_tag, clone_tag, _, _, clone_config, new_config = exploits[0]
    target, clone = (by_index[int(tag.split("_", 1)[0])] for tag in (target_tag, clone_tag))
    assert target != clone
    # explored: the clone's learning rate times one of PBT's factors (resampling is off); its batch size copied
    ratio = new_config["config.lr"] / clone_config["config.lr"]
    assert min(abs(ratio - f) for f in (0.8, 1.2)) < 1e-9, (clone_config, new_config)
    assert new_config["config.train_batch_size"] == clone_config["config.train_batch_size"]
    own_batch = results[target][0]["config"]["config.train_batch_size"]
    clone_batch = clone_config["config.train_batch_size"]
    assert own_batch != clone_batch
    # Restored: the first result with the new config continues the clone's counters (iteration k at
    # clone_batch steps each), not the trial's own (k - 1 iterations at own_batch, then one at clone_batch).
    after = next(r for r in results[target] if r["config"] == new_config)
    k = after["training_iteration"]
    assert k > 1
    assert after["timesteps_total"] == k * clone_batch != (k - 1) * own_batch + clone_batch
    assert {t.iterations for t in outcome.trials} == {6}


def test_asha_stops_the_bad_trial_early(tmp_path: Path) -> None:
    doc = tune_job(
        tmp_path,
        {
            # One trial at a time, the good one first: the bad one meets the good one's rung values.
            "paramSpace": {"config.lr": {"gridSearch": [GOOD_LR, BAD_LR]}},
            "maxConcurrentTrials": 1,
            "scheduler": {"type": "ASHA", "asha": {"gracePeriod": 4, "reductionFactor": 2, "maxT": 8}},
        },
        "stop.iterations=8",
        "stop.timesteps=null",
        "stop.episodeReturnMean=null",
        "checkpoint.everyIterations=0",
    )
    outcome = run_tune(parse_job(doc))
    by_lr = {t.params["config.lr"]: t for t in outcome.trials}
    assert by_lr[GOOD_LR].iterations == 8, outcome.trials
    assert by_lr[BAD_LR].iterations < 8, outcome.trials
    assert by_lr[BAD_LR].status == "TERMINATED"


def test_sigterm_stops_the_experiment_cleanly_and_resume_auto_continues_it(tmp_path: Path) -> None:
    import os
    import signal
    import threading
    import time

    stop = 120
    doc = tune_job(
        tmp_path,
        {"paramSpace": {"config.lr": {"gridSearch": [GOOD_LR, BAD_LR]}}},
        f"stop.iterations={stop}",
        "stop.timesteps=null",
        "stop.episodeReturnMean=null",
        "resume=auto",
    )
    experiment = tmp_path / "tune" / doc["metadata"]["name"]

    def terminate_after_first_results() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(trial_results(experiment)) < 2:
            time.sleep(0.2)  # until both trials have reported
        os.kill(os.getpid(), signal.SIGTERM)  # what Kubernetes sends a pod

    killer = threading.Thread(target=terminate_after_first_results, daemon=True)
    killer.start()
    first = run_tune(parse_job(doc))
    killer.join()
    assert first.interrupted
    assert all(t.iterations < stop for t in first.trials), first.trials
    assert all(t.checkpoint for t in first.trials), first.trials  # every trial saved on the way out
    assert json.loads((tmp_path / "tune_results.json").read_text())["interrupted"] is True
    # resume: auto restores the experiment, and each trial from its checkpoint, then runs to the stop
    done = run_tune(parse_job(doc))
    assert not done.interrupted
    assert {t.trial_id for t in done.trials} == {t.trial_id for t in first.trials}
    assert all(t.iterations == stop for t in done.trials), done.trials
    assert all(t.timesteps == stop * 1024 for t in done.trials), done.trials
