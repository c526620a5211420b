"""RLlib users' commands as they type them (docs/rllib.md), through the `kuberl` CLI in a subprocess:
tuned-example files run with `kuberl run` and report evaluation in result.json, `kuberl convert` prints a
job, `kuberl train --run … --stop … --checkpoint-freq` and `kuberl rollout` behave as RLlib's commands
did, and a refused key exits 2 with the key and the reason and writes nothing. Tiny budgets: about
30 s in all on a laptop core."""

from __future__ import annotations

import json
import shlex
from functools import partial
from pathlib import Path

import pytest

from kuberl.spec import load_job
from tests import cli

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "rllib.md"


kuberl = partial(cli.kuberl, timeout=600)


def documented(prefix: str) -> list[str]:
    """The command lines of docs/rllib.md's sh blocks that start with `prefix`, split as a shell would."""
    text = DOC.read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```sh\n")[1:]]
    return [line for b in blocks for line in b.splitlines() if line.startswith(prefix)]


def results(run_dir: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (run_dir / "result.json").read_text().splitlines()]


BUDGET = [
    "--no-progress",
    "--set",
    "stop.iterations=1",
    "--set",
    "metrics.port=0",
    "--set",
    "evaluation.interval=1",
]


@pytest.mark.parametrize(
    ("example", "unit"),
    [
        ("cartpole-ppo.yaml", "episodes"),
        ("cartpole-ppo-new-stack.yaml", "timesteps"),
        ("cartpole-dqn.yaml", "episodes"),
    ],
)
def test_tuned_example_runs_and_reports_evaluation(example: str, unit: str, tmp_path: Path) -> None:
    path = ROOT / "examples" / "rllib" / example
    res = kuberl("run", str(path), *BUDGET, "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    [line] = results(tmp_path / "run")
    evaluation = line["evaluation"]
    assert isinstance(evaluation, dict)
    job = load_job(path)
    if unit == "episodes":  # evaluation_duration N episodes
        assert evaluation["episodes"] == job.spec.evaluation.episodes
        assert isinstance(evaluation["episode_return_mean"], float)
    else:  # evaluation_duration N timesteps: N steps, the episodes completed within them
        steps = job.spec.evaluation.timesteps
        assert steps is not None
        assert evaluation["num_env_steps_sampled"] == steps
        assert evaluation["episodes"] >= 1  # CartPole truncates at 500 steps


def test_evaluation_env_config_overrides_the_env(tmp_path: Path) -> None:
    """evaluation_config.env_config reaches the evaluation envs only: a 5-step time limit there."""
    path = ROOT / "examples" / "rllib" / "cartpole-ppo.yaml"
    res = kuberl(
        "run",
        str(path),
        *BUDGET,
        "--set",
        "evaluation.envConfig={max_episode_steps: 5}",
        "--run-dir",
        str(tmp_path / "run"),
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    [line] = results(tmp_path / "run")
    assert line["evaluation"]["episode_len_mean"] == 5.0  # type: ignore[index]
    assert line["episode_len_mean"] > 5.0  # type: ignore[operator]  # training envs keep CartPole's 500


def test_documented_convert_prints_a_job(tmp_path: Path) -> None:
    [cmd] = documented("kuberl convert ")
    argv, target = (shlex.split(part) for part in cmd.split(">"))
    res = kuberl(*argv[1:], cwd=ROOT)
    assert res.returncode == 0, res.stderr
    (tmp_path / target[0]).write_text(res.stdout)
    job = load_job(tmp_path / target[0])
    assert (job.kind, job.spec.algorithm, job.spec.stop.episode_return_mean) == ("RLTrainingJob", "PPO", 150)
    assert "sgdMinibatchSize" not in res.stdout
    assert "minibatchSize: 128" in res.stdout


def test_documented_train_and_rollout(tmp_path: Path) -> None:
    """docs/rllib.md's `kuberl train --run …` (on a tiny budget), then its `kuberl rollout` of that run."""
    [train] = documented("kuberl train ")
    res = kuberl(*shlex.split(train)[1:], "--stop-iters", "1", "--no-progress", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    [rollout] = documented("kuberl rollout ")
    argv = shlex.split(rollout)
    res = kuberl(*argv[1:], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = json.loads((tmp_path / argv[argv.index("--out") + 1]).read_text())
    episodes, steps = int(argv[argv.index("--episodes") + 1]), int(argv[argv.index("--steps") + 1])
    # Whichever limit comes first (a trained policy may keep its episodes going past the steps).
    assert out["episodes"] == len(out["episode_returns"]) == len(out["episode_lengths"])
    assert out["episodes"] == episodes or (
        out["episodes"] < episodes and out["num_env_steps_sampled"] >= steps
    )
    assert out["iteration"] == 1
    # Each limit alone: exactly that many episodes, or exactly that many steps (played on one env).
    res = kuberl(
        "rollout", argv[2], "--episodes", "2", "--steps", "0", "--out", "episodes.json", cwd=tmp_path
    )
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / "episodes.json").read_text())["episodes"] == 2
    res = kuberl("rollout", argv[2], "--steps", "40", "--out", "steps.json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / "steps.json").read_text())["num_env_steps_sampled"] == 40


def test_train_checkpoint_freq_and_old_stop_name(tmp_path: Path) -> None:
    res = kuberl(
        "train",
        "--run",
        "ppo",
        "--env",
        "CartPole-v1",
        "--config",
        '{"num_workers": 0, "train_batch_size": 256, "sgd_minibatch_size": 64, "num_sgd_iter": 1}',
        "--stop",
        '{"training_iteration": 2, "episode_reward_mean": 10000}',
        "--checkpoint-freq",
        "1",
        "--no-progress",
        "--set",
        "metrics.port=0",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    checkpoints = sorted(
        p.name for p in (tmp_path / "runs" / "ppo-cartpole-v1" / "checkpoints").glob("checkpoint_*")
    )
    assert checkpoints == ["checkpoint_000001", "checkpoint_000002"]
    params = json.loads((tmp_path / "runs" / "ppo-cartpole-v1" / "params.json").read_text())
    assert params["spec"]["stop"] == {"episodeReturnMean": 10000.0, "iterations": 2}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "{bad}", "--run-dir", "out"], "exp.config.framework: 'tf': kuberl is PyTorch-only"),
        (["convert", "{bad}"], "exp.config.framework: 'tf': kuberl is PyTorch-only"),
        (
            [
                "train",
                "--run",
                "PPO",
                "--env",
                "CartPole-v1",
                "--config",
                '{"batch_mode": "complete_episodes"}',
            ],
            "--config.batch_mode: 'complete_episodes'",
        ),
        (
            ["train", "--run", "PPO", "--env", "CartPole-v1", "--stop", '{"episode_len_mean": 1}'],
            "--stop.episode_len_mean",
        ),
        (["rollout", "nowhere", "--steps", "0", "--episodes", "0"], "--steps and --episodes are both 0"),
    ],
)
def test_refusals_exit_2_and_write_nothing(args: list[str], message: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("exp:\n  run: PPO\n  env: CartPole-v1\n  config: {framework: tf, num_workers: 0}\n")
    work = tmp_path / "work"
    work.mkdir()
    res = kuberl(*[a.replace("{bad}", str(bad)) for a in args], cwd=work)
    assert res.returncode == 2, res.stderr
    assert message in res.stderr
    assert "Traceback" not in res.stderr
    assert res.stdout == ""
    assert list(work.iterdir()) == []
