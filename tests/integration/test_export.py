"""`kuberl export` (docs/export.md) and the policy API: the exported TorchScript file, loaded with
`torch.jit.load` in a process that never imports kuberl or Ray, gives the same greedy actions as
`Algorithm.compute_actions` on 1,000 observations, for an MLP, a CNN and an LSTM policy (state in,
state out), and the exported ONNX file, run by onnxruntime in a process that never imports kuberl,
torch or Ray, gives them too (discrete and continuous actions); get_policy / get_weights / set_weights / compute_single_action behave as RLlib's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from kuberl import build_algorithm
from kuberl.core.models import flatten_obs
from tests.cli import kuberl
from tests.export_replay import replay

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration

JOBS: dict[str, tuple[str, dict[str, Any]]] = {
    "mlp": ("ppo-job.yaml", {}),
    "cnn": (
        "ppo-job.yaml",
        {
            "env": "tests.envs:make_bright_side",
            "envConfig": {},
            "config": {"model": {"conv_filters": [[4, 3, 2]]}},
        },
    ),
    "lstm": ("ppo-lstm-recall.yaml", {}),
    "box": ("ppo-pendulum.yaml", {}),
}


def trained_checkpoint(kind: str, tmp_path: Path, *, seed: int = 0) -> tuple[Any, str]:
    """One small training iteration of the kind's job (in the driver), and its checkpoint."""
    example, changes = JOBS[kind]
    doc = yaml.safe_load((ROOT / "examples" / example).read_text())
    spec = doc["spec"]
    spec.update({k: v for k, v in changes.items() if k != "config"})
    spec["config"].update(changes.get("config", {}))
    spec["config"].update({"train_batch_size": 256, "minibatch_size": 128, "num_epochs": 1})
    spec.update(
        {"runDir": str(tmp_path / "run"), "seed": seed, "resources": {"envRunners": 0, "envsPerRunner": 4}}
    )
    algo = build_algorithm(doc)
    algo.train()
    if kind == "box":  # larger weights: some greedy actions beyond the bounds, so the clipping is checked
        algo.set_weights({k: v * 60 for k, v in algo.get_weights().items()})
    return algo, algo.save(str(tmp_path / "ckpt"))


FORMATS = [("torchscript", "mlp"), ("torchscript", "cnn"), ("torchscript", "lstm")]
FORMATS += [("onnx", "mlp"), ("onnx", "cnn"), ("onnx", "lstm"), ("onnx", "box")]


@pytest.mark.parametrize(("fmt", "kind"), FORMATS)
def test_exported_policy_acts_like_compute_actions(fmt: str, kind: str, tmp_path: Path) -> None:
    algo, uri = trained_checkpoint(kind, tmp_path)
    file = "policy.onnx" if fmt == "onnx" else "policy.pt"
    try:
        res = kuberl("export", uri, "--format", fmt, "--out", file, cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        info = json.loads(res.stdout)
        assert info["file"] == file
        algo.obs_space.seed(0)
        if kind == "lstm":
            steps, batch = 10, 100  # 1,000 observations, the LSTM state carried through 10 steps
            raw = np.stack([np.stack([algo.obs_space.sample() for _ in range(batch)]) for _ in range(steps)])
            state = algo.initial_state(batch)
            expected = []
            for t in range(steps):
                a, state = algo.compute_actions_with_state(raw[t], state)
                expected.append(a)
            flat = np.stack([flatten_obs(algo.obs_space, raw[t]) for t in range(steps)])
            got = replay(tmp_path / file, flat, tmp_path, cell=algo.config.model.lstm_cell_size)
            np.testing.assert_array_equal(got, np.stack(expected))
            return
        raw = np.stack([algo.obs_space.sample() for _ in range(1000)])
        flat = flatten_obs(algo.obs_space, raw)
        # The documented input: a Box observation reshaped to [B, D] as float32.
        np.testing.assert_array_equal(flat, raw.reshape(1000, -1).astype(np.float32))
        got = replay(tmp_path / file, flat, tmp_path)
        expected = algo.compute_actions(raw)
        if kind == "box":
            # Continuous: the deterministic mean, clipped to the bounds; onnxruntime's kernels round
            # differently from torch's in the last float32 bits.
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
            bound = float(algo.action_space.high[0])
            # The clipping is checked only if some actions hit the bounds and some do not.
            assert (np.abs(expected) == bound).any()
            assert (np.abs(expected) < bound).any()
        else:
            np.testing.assert_array_equal(got, expected)
        assert len(np.unique(expected)) > 1 or kind == "cnn", (
            "a policy that always acts the same proves little"
        )
    finally:
        algo.stop()


def test_onnx_format_is_named_in_errors(tmp_path: Path) -> None:
    res = kuberl("export", str(tmp_path / "none"), "--format", "savedmodel", "--out", "p", cwd=tmp_path)
    assert res.returncode == 2
    assert "--format" in res.stderr
    assert "onnx" in res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "p").exists()


def test_policy_api(tmp_path: Path) -> None:
    algo, _ = trained_checkpoint("mlp", tmp_path)
    other, _ = trained_checkpoint("mlp", tmp_path / "other", seed=1)
    try:
        policy = algo.get_policy()
        assert policy.policy_id == "default_policy"
        with pytest.raises(KeyError, match="one policy"):
            algo.get_policy("left")
        obs = np.stack([algo.obs_space.sample() for _ in range(200)])
        before = algo.compute_actions(obs)
        assert not np.array_equal(before, other.compute_actions(obs)), "two seeds, one policy: proves nothing"
        weights = other.get_policy().get_weights()
        policy.set_weights(weights)
        assert all(np.array_equal(v, algo.get_weights()[k]) for k, v in weights.items())
        np.testing.assert_array_equal(algo.compute_actions(obs), other.compute_actions(obs))
        single = algo.compute_single_action(obs[0])
        assert int(single) == int(other.compute_actions(obs[:1])[0])
        action, state, extras = policy.compute_single_action(obs[0])
        assert (int(action), state, extras) == (int(single), None, {})
        assert isinstance(policy.model, torch.nn.Module)
    finally:
        algo.stop()
        other.stop()
