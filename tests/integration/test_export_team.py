"""QMIX teams outside training (docs/export.md, docs/algorithms/qmix.md): `kuberl export` of a feed-forward
team with action masks and of a recurrent (GRU) team, loaded in a process without kuberl or Ray
(`torch.jit.load`; onnxruntime without torch either), gives the greedy actions of `compute_actions` /
`compute_actions_with_state` on 1,000 joint observations, the GRU state carried through whole episodes;
`kuberl evaluate` plays the checkpoint's team as the algorithm does; `kuberl serve --checkpoint`, which
serves single-agent policies, refuses a team with the reason."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import yaml

from kuberl import build_algorithm
from kuberl.core.multi_agent.joint import JointEnv
from tests.cli import kuberl
from tests.export_replay import replay

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration

# kind: (example, iterations of 8 env steps): long enough that the greedy team's actions differ by
# observation (a team that always answers the same proves little).
TEAMS = {"masked": ("qmix-masked.yaml", 60), "gru": ("qmix-gru-recall.yaml", 300)}


def team_checkpoint(kind: str, tmp_path: Path) -> tuple[Any, str]:
    example, iterations = TEAMS[kind]
    doc = yaml.safe_load((ROOT / "examples" / example).read_text())
    doc["spec"].update({"runDir": str(tmp_path / "run"), "metrics": {"enabled": False}, "evaluation": {}})
    algo = build_algorithm(doc)
    for _ in range(iterations):
        algo.train()
    return algo, algo.save(str(tmp_path / "ckpt"))


def greedy_episodes(algo: Any, steps: int, batch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`batch` envs stepped `steps` times by compute_actions_with_state (greedy), each env restarting
    when its episode ends and its rows of the state with it: (obs [T, B, agents, D], actions
    [T, B, agents], dones [T, B])."""
    envs = [JointEnv(algo.spec.env, dict(algo.spec.env_config)) for _ in range(batch)]
    obs = np.stack([env.reset(seed=i)[0] for i, env in enumerate(envs)])
    state = algo.initial_state(batch)
    seen, taken, ended = [], [], []
    for _ in range(steps):
        actions, state = algo.compute_actions_with_state(obs, state)
        seen.append(obs.copy())
        taken.append(actions)
        done = np.zeros(batch, dtype=bool)
        for i, env in enumerate(envs):
            step = env.step(actions[i])
            done[i] = step.terminated or step.truncated
            obs[i] = env.reset()[0] if done[i] else step.obs
        state = state.after_step(np.zeros(batch), done)
        ended.append(done)
    return np.stack(seen), np.stack(taken), np.stack(ended)


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
@pytest.mark.parametrize("kind", ["masked", "gru"])
def test_exported_team_acts_like_compute_actions(kind: str, fmt: str, tmp_path: Path) -> None:
    algo, uri = team_checkpoint(kind, tmp_path)
    file = "team.onnx" if fmt == "onnx" else "team.pt"
    try:
        res = kuberl("export", uri, "--format", fmt, "--out", file, cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        info = json.loads(res.stdout)
        dim = gym.spaces.flatdim(algo.obs_space)
        assert info["inputs"][0].startswith(f"obs [B, 2, {dim}]")
        if kind == "gru":
            # 10 steps of 100 envs: 1,000 joint observations, over 3-step episodes (the state reset 3 times).
            obs, expected, dones = greedy_episodes(algo, steps=10, batch=100)
            assert dones.sum() == 300
            cell = algo.config.model.lstm_cell_size
            got = replay(tmp_path / file, obs, tmp_path, cell=cell, mode="team", dones=dones)
            # The cue (first step only) decides the answer two steps later: the state carries it.
            assert len(np.unique(expected[2])) > 1
        else:
            algo.obs_space.seed(0)
            raw = [[algo.obs_space.sample() for _ in range(2)] for _ in range(1000)]
            obs = np.asarray(
                [[gym.spaces.flatten(algo.obs_space, o) for o in joint] for joint in raw], np.float32
            )
            expected = algo.compute_actions(obs)
            got = replay(tmp_path / file, obs, tmp_path)
            # The graph honours the masks: no agent's action is one its mask forbids (all-zero: any).
            masks = np.asarray([[o["action_mask"] for o in joint] for joint in raw])
            legal = np.take_along_axis(masks, got[..., None], axis=-1)[..., 0] == 1
            assert (legal | (masks.sum(-1) == 0)).all()
            assert len(np.unique(expected)) > 1
        np.testing.assert_array_equal(got, expected)
    finally:
        algo.stop()


def test_evaluate_plays_the_recurrent_team_and_serve_refuses_a_team(tmp_path: Path) -> None:
    algo, uri = team_checkpoint("gru", tmp_path)
    try:
        res = kuberl("evaluate", uri, "--episodes", "10", cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        out = json.loads(res.stdout)
        assert out["episodes"] == 10
        assert out["episode_return_mean"] == algo.evaluate(10)["episode_return_mean"]
        res = kuberl("serve", "--checkpoint", uri, "--port", "0", cwd=tmp_path, timeout=120)
        assert res.returncode == 2
        assert "QMIX" in res.stderr
        assert "kuberl export" in res.stderr
        assert "Traceback" not in res.stderr
    finally:
        algo.stop()
