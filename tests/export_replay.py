"""Replays a `kuberl export` file the way a user's own program would: a process that never imports kuberl
or Ray (nor torch, for ONNX), only the file, numpy and torch or onnxruntime. One script for every export
test, run as `python tests/export_replay.py MODEL OBS.npy OUT.npy [--cell N --mode policy|team
[--dones DONES.npy]]`; `replay()` runs it from a test and returns the actions.

Without --cell the model is feed-forward: OUT = model(OBS), whatever OBS's shape ([B, D] for a policy,
[B, agents, D] for a team). With --cell, OBS holds T steps ([T, B, D] or [T, B, agents, D]) and the
model's recurrent state, zeros at first, is carried from step to step:
- `--mode policy`: a single policy's LSTM, inputs (obs, h, c), outputs (actions, h_out, c_out);
- `--mode team`: a QMIX/VDN team's GRU, inputs (obs, h), outputs (actions, h_out), h [B, agents, cell];
and where DONES [T, B] is true, that batch row's state is zeroed after the step (its episode ended).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

# One step: (obs, state) -> (actions, state), all numpy.
Step = Callable[[np.ndarray, list[np.ndarray]], tuple[np.ndarray, list[np.ndarray]]]
STATES = {"policy": ["h", "c"], "team": ["h"]}


def _onnx_step(model: str, names: list[str]) -> Step:
    import onnxruntime as ort

    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    outputs = ["actions", *(f"{n}_out" for n in names)]

    def step(obs: np.ndarray, state: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        actions, *new = session.run(outputs, {"obs": obs, **dict(zip(names, state, strict=True))})
        return actions, new

    return step


def _torchscript_step(model: str) -> Step:
    import torch

    module = torch.jit.load(model)

    def step(obs: np.ndarray, state: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        with torch.no_grad():
            out = module(torch.from_numpy(obs), *(torch.from_numpy(s) for s in state))
        if not state:
            return out.numpy(), []
        return out[0].numpy(), [t.numpy() for t in out[1:]]

    return step


def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("obs")
    parser.add_argument("out")
    parser.add_argument("--cell", type=int, help="the recurrent state's size (a recurrent model)")
    parser.add_argument("--mode", choices=sorted(STATES), default="policy")
    parser.add_argument("--dones", help="[T, B] booleans: zero a row's state after its episode's last step")
    args = parser.parse_args()
    names = STATES[args.mode] if args.cell else []
    onnx = args.model.endswith(".onnx")
    step = _onnx_step(args.model, names) if onnx else _torchscript_step(args.model)
    obs = np.load(args.obs)
    if not args.cell:
        out, _ = step(obs, [])
    else:
        dones = np.load(args.dones) if args.dones else None
        state = [np.zeros((*obs.shape[1:-1], args.cell), np.float32) for _ in names]
        actions = []
        for t in range(obs.shape[0]):
            a, state = step(obs[t], state)
            actions.append(a)
            if dones is not None:
                keep = (~dones[t]).astype(np.float32).reshape(-1, *[1] * (state[0].ndim - 1))
                state = [s * keep for s in state]
        out = np.stack(actions)
    np.save(args.out, out)
    forbidden = {"kuberl", "ray"} | ({"torch"} if onnx else set())
    imported = sorted(forbidden & {m.split(".")[0] for m in sys.modules})
    assert not imported, f"imported {imported}"


def replay(
    model: Path,
    obs: np.ndarray,
    tmp_path: Path,
    *,
    cell: int | None = None,
    mode: str = "policy",
    dones: np.ndarray | None = None,
) -> np.ndarray:
    """Runs this script on `model` in a fresh interpreter with no PYTHONPATH; returns its actions."""
    np.save(tmp_path / "obs.npy", obs)
    extra = ["--cell", str(cell), "--mode", mode] if cell else []
    if dones is not None:
        np.save(tmp_path / "dones.npy", dones)
        extra += ["--dones", str(tmp_path / "dones.npy")]
    res = subprocess.run(
        [sys.executable, __file__, str(model), str(tmp_path / "obs.npy"), str(tmp_path / "out.npy"), *extra],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env={**os.environ, "PYTHONPATH": ""},
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    return np.load(tmp_path / "out.npy")


if __name__ == "__main__":
    _main()
