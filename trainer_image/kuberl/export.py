"""`kuberl export CHECKPOINT --format torchscript|onnx --out FILE`: a checkpoint's greedy policy as one
TorchScript file that runs with plain PyTorch, or one ONNX file that runs with onnxruntime (no torch),
without kuberl and without Ray (docs/export.md).

The file's input is the flattened observation, float32 `[B, D]` (for a Box observation space simply
`obs.reshape(B, -1)`); the observation filter (MeanStdFilter) and the action bounds are baked in, so
its output is the action the env takes — the same as `Algorithm.compute_actions(obs)`. A recurrent
policy (model.useLstm) maps `(obs, h, c)` to `(actions, h, c)`; zeros `[B, lstmCellSize]` start an
episode. The graph is traced (torch.jit.trace, or torch.export for ONNX) from the very act() the env
runners sample with. ONNX graph inputs are named `obs`, `h`, `c` and outputs `actions`, `h_out`, `c_out`,
with a dynamic batch dimension.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import torch
from torch import nn

from kuberl.algorithms.families.value_factorization import ValueFactorizationAlgorithm
from kuberl.core.models import action_distribution
from kuberl.core.multi_agent.agent_q import AgentQ, RecurrentAgentQ, greedy
from kuberl.core.recurrent import RecurrentActorCritic, RecurrentState
from kuberl.core.sample_batch import Columns
from kuberl.sampling import in_driver
from kuberl.spec import SpecError, parse_job

if TYPE_CHECKING:
    from kuberl.algorithms.api import AlgorithmAPI
    from kuberl.algorithms.base import Algorithm

FORMATS = ("torchscript", "onnx")
ONNX_INPUTS = ("obs", "h", "c")
ONNX_OUTPUTS = ("actions", "h_out", "c_out")
FILTER_CLIP = 10.0  # RunningStats.normalize's clip


class _Prepare(nn.Module):
    """The observation filter and the action bounds as constants of the exported graph."""

    mean: torch.Tensor
    std: torch.Tensor
    low: torch.Tensor
    high: torch.Tensor

    def __init__(self, algo: Algorithm) -> None:
        super().__init__()
        stats = algo.obs_filter
        self.normalize = stats is not None and stats.count >= 2
        self.register_buffer(
            "mean",
            torch.as_tensor(stats.mean if stats is not None and self.normalize else 0.0, dtype=torch.float32),
        )
        self.register_buffer(
            "std",
            torch.as_tensor(stats.std if stats is not None and self.normalize else 1.0, dtype=torch.float32),
        )
        space = algo.action_space
        self.bounded = isinstance(space, gym.spaces.Box)
        box = space if isinstance(space, gym.spaces.Box) else None
        low = torch.as_tensor(box.low, dtype=torch.float32) if box is not None else torch.zeros(())
        high = torch.as_tensor(box.high, dtype=torch.float32) if box is not None else torch.zeros(())
        self.register_buffer("low", low)
        self.register_buffer("high", high)

    def obs(self, obs: torch.Tensor) -> torch.Tensor:
        if not self.normalize:
            return obs
        return torch.clamp((obs - self.mean) / self.std, -FILTER_CLIP, FILTER_CLIP)

    def action(self, action: torch.Tensor) -> torch.Tensor:
        return torch.maximum(torch.minimum(action, self.high), self.low) if self.bounded else action


class GreedyPolicy(nn.Module):
    """obs [B, D] → greedy actions, through the runner policy's own act()."""

    def __init__(self, algo: Algorithm) -> None:
        super().__init__()
        self.policy = algo.inference_policy()
        self.net = self.policy.module  # registered, so its weights are in the file
        self.prepare = _Prepare(algo)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        out = self.policy.act(self.prepare.obs(obs), explore=False, generator=torch.default_generator)
        return self.prepare.action(out[Columns.ACTIONS])


class RecurrentGreedyPolicy(nn.Module):
    """(obs [B, D], h [B, H], c [B, H]) → (greedy actions, h, c)."""

    net: RecurrentActorCritic

    def __init__(self, algo: Algorithm, module: RecurrentActorCritic) -> None:
        super().__init__()
        self.net = module
        self.dist = action_distribution(algo.action_space)
        self.prepare = _Prepare(algo)

    def forward(self, obs: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, ...]:
        batch = obs.shape[0]
        state = self.net.initial_state(batch, device=obs.device)
        dist_in, _, h2, c2 = self.net.step(
            self.prepare.obs(obs), RecurrentState(h, c, state.prev_actions, state.prev_rewards)
        )
        return self.prepare.action(self.dist.deterministic(dist_in)), h2, c2


class TeamGreedyPolicy(nn.Module):
    """A QMIX/VDN team: joint observations [B, agents, D] → every agent's greedy (legal) action
    [B, agents], through agent_q.greedy, the runners' act() at epsilon 0."""

    def __init__(self, agent: AgentQ | RecurrentAgentQ, mask: slice | None) -> None:
        super().__init__()
        self.agent = agent
        self.mask = mask

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return greedy(self.agent, obs, self.mask, None)[0]


class RecurrentTeamGreedyPolicy(TeamGreedyPolicy):
    """(obs [B, agents, D], h [B, agents, cell]) → (greedy actions [B, agents], h_out): a recurrent
    team, every agent's GRU state in and out (zeros at an episode's start)."""

    def forward(self, obs: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        actions, h_out = greedy(self.agent, obs, self.mask, h)
        assert h_out is not None
        return actions, h_out


def inference_algorithm(uri: str, *, policy_id: str | None = None) -> tuple[AlgorithmAPI, Algorithm]:
    """(the algorithm restored from `uri` in this process — no runners, no Ray —, the single-agent
    algorithm of `policy_id` in it, or itself). Call `.stop()` on the first when done."""
    from kuberl.algorithms.base import SPEC_FILE
    from kuberl.build import build_algorithm
    from kuberl.checkpoint import load_checkpoint

    loaded = load_checkpoint(uri)
    doc = json.loads(loaded.files[SPEC_FILE])
    in_driver(doc["spec"])
    doc["spec"].pop("external", None)
    doc["spec"].pop("output", None)
    job = parse_job(doc, source=uri)
    algo = build_algorithm(job, run_dir=Path("runs") / job.metadata.name)
    try:
        algo.load_checkpoint_files(loaded.files, where=loaded.info.uri)
        policy = algo.get_policy(policy_id) if policy_id else algo.get_policy()
        return algo, policy.algorithm
    except BaseException:
        algo.stop()
        raise


def exportable(policy_algo: Algorithm) -> nn.Module:
    """The module to trace for a single-agent algorithm or a QMIX/VDN team, or a SpecError saying why
    there is none."""
    if isinstance(policy_algo, ValueFactorizationAlgorithm):
        agent = policy_algo.agent_network()
        if isinstance(agent, RecurrentAgentQ):
            return RecurrentTeamGreedyPolicy(agent, policy_algo.mask)
        return TeamGreedyPolicy(agent, policy_algo.mask)
    module = policy_algo.policy_module()
    if isinstance(module, RecurrentActorCritic):
        cfg = policy_algo.config.model
        if cfg.lstm_use_prev_action or cfg.lstm_use_prev_reward:
            raise SpecError(
                [
                    (
                        "spec.config.model",
                        "lstmUsePrevAction/lstmUsePrevReward policies are not exportable yet: the exported "
                        "graph takes (obs, h, c) only",
                    )
                ]
            )
        return RecurrentGreedyPolicy(policy_algo, module)
    return GreedyPolicy(policy_algo)


def write_onnx(wrapper: nn.Module, args: tuple[torch.Tensor, ...], out: Path) -> None:
    """torch.export → ONNX (the TorchScript-based exporter is deprecated since PyTorch 2.9), one
    self-contained file (no external weights), the batch dimension dynamic."""
    try:
        import onnxscript  # noqa: F401  (torch.onnx's exporter needs it; a clear error beats its own)
    except ImportError:
        raise SpecError([("--format", "onnx needs the export extra: pip install 'kuberl[export]'")]) from None
    names = ONNX_INPUTS[: len(args)]
    batch = torch.export.Dim("batch")
    torch.onnx.export(
        wrapper, args, str(out), dynamo=True, verbose=False, external_data=False,
        input_names=list(names), output_names=list(ONNX_OUTPUTS[: len(args)]),
        dynamic_shapes=tuple({0: batch} for _ in names),
    )  # fmt: skip


def example_inputs(wrapper: nn.Module, dim: int) -> tuple[tuple[torch.Tensor, ...], list[str]]:
    """(the example arguments to trace `wrapper` with, a batch of 2, and their description)."""
    if isinstance(wrapper, TeamGreedyPolicy):
        agents = wrapper.agent.n_agents
        obs = torch.zeros(2, agents, dim)
        described = [f"obs [B, {agents}, {dim}] float32 (agents in the env's order)"]
        if isinstance(wrapper.agent, RecurrentAgentQ):
            cell = wrapper.agent.cell_size
            return (obs, wrapper.agent.initial_state(2)), [*described, f"h [B, {agents}, {cell}] float32"]
        return (obs,), described
    example = torch.zeros(2, dim)
    if isinstance(wrapper, RecurrentGreedyPolicy):
        h = torch.zeros(2, wrapper.net.cell_size)
        return (example, h, h.clone()), [f"obs [B, {dim}] float32", "h [B, H]", "c [B, H]"]
    return (example,), [f"obs [B, {dim}] float32"]


def export_checkpoint(uri: str, *, fmt: str, out: Path, policy_id: str | None = None) -> dict[str, Any]:
    """Write the policy of checkpoint `uri` to `out`; returns what the file expects and returns."""
    if fmt not in FORMATS:
        raise SpecError([("--format", f"{fmt!r} is not one of {', '.join(FORMATS)}")])
    algo, policy_algo = inference_algorithm(uri, policy_id=policy_id)
    try:
        wrapper = exportable(policy_algo).eval()
        dim = int(gym.spaces.flatdim(policy_algo.obs_space))
        args, inputs = example_inputs(wrapper, dim)
        out.parent.mkdir(parents=True, exist_ok=True)
        with torch.no_grad():
            if fmt == "onnx":
                write_onnx(wrapper, args, out)
            else:
                torch.jit.save(torch.jit.trace(wrapper, args), str(out))
        return {
            "file": str(out),
            "format": fmt,
            "algorithm": algo.name,
            "policy": policy_id or "default_policy",
            "iteration": algo.iteration,
            "inputs": inputs,
            "outputs": list(ONNX_OUTPUTS[: len(args)])
            if fmt == "onnx"
            else ["actions", *(["h", "c"][: len(args) - 1])],
        }
    finally:
        algo.stop()
