"""Value factorization for cooperative multi-agent teams, shared by QMIX and VDN (kuberl.algorithms.qmix,
kuberl.algorithms.vdn): one joint learner over every agent of a PettingZoo ParallelEnv.

Each agent's Q-values come from one agent network shared by all agents (its input: the agent's
observation and a one-hot agent id); a mixer combines the Q-values of the actions the agents took into
the team's Q_tot(s, a), trained by a TD loss on the team reward from a replay of joint transitions:

    y = r + γ (1 − terminated) · mixer_target(Q_target_i(o'_i, a*_i), s'),
    a*_i = argmax_a Q_i(o'_i, a)  (double Q: the online agent network; else the target one)

Because the mixer is monotonic in every agent's Q-value (VDN: a sum; QMIX: non-negative weights from
hypernetworks of the state), each agent's greedy action maximises Q_tot: the agents act decentralised,
each from its own observation, and `compute_actions` needs no state. Experience comes from joint env
runners (kuberl.core.multi_agent.joint_runner: `envRunners` Ray actors, or the driver when it is 0), each
stepping `envsPerRunner` copies of the env, epsilon-greedy per agent, with the learner's agent network
sent before every sample.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kuberl.algorithms.base import Algorithm, Parts, PolicyState, StepOutcome
from kuberl.algorithms.families.q_learning import build_target
from kuberl.core.env_factory import EnvError
from kuberl.core.learner import Learner, driver_learner_device
from kuberl.core.multi_agent.agent_q import (
    AgentQ,
    RecurrentAgentQ,
    TeamState,
    act,
    build_agent_q,
    mask_q,
)
from kuberl.core.multi_agent.joint import JointEnv
from kuberl.core.multi_agent.joint_runner import (
    ACTIONS,
    NEXT_OBS,
    NEXT_STATE,
    OBS,
    REWARD,
    STATE,
    TERMINATED,
    JointRunnerConfig,
    JointRunnerGroup,
)
from kuberl.core.multi_agent.masking import mask_slice
from kuberl.core.multi_agent.sequence_replay import H0, VALID, SequenceReplay
from kuberl.core.replay import ReplayBuffer
from kuberl.core.schedules import piecewise_linear
from kuberl.core.target import hard_update, polyak_update
from kuberl.spec import RLTrainingJob, SpecError
from kuberl.spec.algorithms.value_factorization import ValueFactorizationConfigBase

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------
# Networks
# ---------------------------------------------------------------------------------------------------


class SumMixer(nn.Module):
    """VDN: Q_tot = Σ_i Q_i (the state is not used)."""

    def forward(self, q: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        return q.sum(dim=-1)


class MonotonicMixer(nn.Module):
    """QMIX's mixer (Rashid et al. 2018, §4.2): Q_tot = w2ᵀ elu(W1ᵀ q + b1) + V(s), where W1, w2 are the
    absolute values of hypernetwork outputs of the state (so ∂Q_tot/∂Q_i ≥ 0), b1 a linear function of
    the state and V(s) a two-layer one."""

    def __init__(self, n_agents: int, state_dim: int, embed_dim: int, hypernet_hidden: int) -> None:
        super().__init__()
        self.n_agents, self.embed_dim = n_agents, embed_dim
        self.hyper_w1 = nn.Sequential(
            nn.Linear(state_dim, hypernet_hidden), nn.ReLU(), nn.Linear(hypernet_hidden, n_agents * embed_dim)
        )
        self.hyper_w2 = nn.Sequential(
            nn.Linear(state_dim, hypernet_hidden), nn.ReLU(), nn.Linear(hypernet_hidden, embed_dim)
        )
        self.hyper_b1 = nn.Linear(state_dim, embed_dim)
        self.value = nn.Sequential(nn.Linear(state_dim, embed_dim), nn.ReLU(), nn.Linear(embed_dim, 1))

    def forward(self, q: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """q [B, agents], state [B, state_dim] → Q_tot [B]."""
        b = q.shape[0]
        w1 = self.hyper_w1(state).abs().view(b, self.n_agents, self.embed_dim)
        hidden = F.elu(torch.bmm(q.unsqueeze(1), w1).squeeze(1) + self.hyper_b1(state))
        w2 = self.hyper_w2(state).abs()
        out: torch.Tensor = (hidden * w2).sum(dim=-1) + self.value(state).squeeze(-1)
        return out


class FactoredQ(nn.Module):
    """The agent network and the mixer: what the learner trains and the target copies."""

    def __init__(self, agent: AgentQ | RecurrentAgentQ, mixer: nn.Module) -> None:
        super().__init__()
        self.agent = agent
        self.mixer = mixer


# ---------------------------------------------------------------------------------------------------
# Loss and learner
# ---------------------------------------------------------------------------------------------------


def factored_td_loss(
    online: FactoredQ,
    target: FactoredQ,
    batch: Mapping[str, torch.Tensor],
    *,
    gamma: float,
    double_q: bool,
    loss_fn: str,
    mask: slice | None = None,
) -> dict[str, torch.Tensor]:
    """The joint TD loss on Q_tot (module docs) as named terms. `mask`: where the action mask lies in an
    agent's flat observation; s' carries its own, so the target's choice of a*_i is among legal actions."""
    q = online.agent(batch[OBS])  # [B, agents, actions]
    q_taken = q.gather(2, batch[ACTIONS].long().unsqueeze(-1)).squeeze(-1)  # [B, agents]
    q_tot = online.mixer(q_taken, batch[STATE])
    with torch.no_grad():
        q_next_target = target.agent(batch[NEXT_OBS])
        chooser = online.agent(batch[NEXT_OBS]) if double_q else q_next_target
        best = mask_q(chooser, batch[NEXT_OBS], mask).argmax(dim=-1, keepdim=True)
        q_next = q_next_target.gather(2, best).squeeze(-1)
        q_tot_next = target.mixer(q_next, batch[NEXT_STATE])
        y = batch[REWARD] + gamma * (1.0 - batch[TERMINATED]) * q_tot_next
    huber = loss_fn == "huber"
    loss = F.smooth_l1_loss(q_tot, y, beta=1.0) if huber else 0.5 * (q_tot - y).pow(2).mean()
    return {
        "total_loss": loss,
        "td_error_abs": (q_tot - y).detach().abs().mean(),
        "q_tot_mean": q_tot.detach().mean(),
        "target_q_tot_mean": y.mean(),
        "agent_q_mean": q_taken.detach().mean(),
    }


def recurrent_td_loss(
    online: FactoredQ,
    target: FactoredQ,
    batch: Mapping[str, torch.Tensor],
    *,
    gamma: float,
    double_q: bool,
    loss_fn: str,
    mask: slice | None = None,
) -> dict[str, torch.Tensor]:
    """factored_td_loss over padded sequences (kuberl.core.multi_agent.sequence_replay): both agent
    networks unroll every sequence from its stored GRU state h0, and padded steps carry no loss."""
    obs, state, valid = batch[OBS], batch[STATE], batch[VALID]
    b, t = valid.shape
    q_all = online.agent.unroll(obs, batch[H0])  # type: ignore[operator]  # [B, T+1, agents, actions]
    q_taken = q_all[:, :-1].gather(3, batch[ACTIONS].long().unsqueeze(-1)).squeeze(-1)  # [B, T, agents]
    q_tot = online.mixer(q_taken.reshape(b * t, -1), state[:, :-1].reshape(b * t, -1)).view(b, t)
    with torch.no_grad():
        q_next_target = target.agent.unroll(obs, batch[H0])[:, 1:]  # type: ignore[operator]
        chooser = q_all[:, 1:].detach() if double_q else q_next_target
        next_obs = obs[:, 1:]
        best = mask_q(
            chooser.reshape(b * t, *chooser.shape[2:]), next_obs.reshape(b * t, *next_obs.shape[2:]), mask
        )
        q_next = q_next_target.reshape(b * t, *chooser.shape[2:]).gather(2, best.argmax(-1, keepdim=True))
        q_tot_next = target.mixer(q_next.squeeze(-1), state[:, 1:].reshape(b * t, -1)).view(b, t)
        y = batch[REWARD] + gamma * (1.0 - batch[TERMINATED]) * q_tot_next
    err = q_tot - y
    per_step = (
        F.smooth_l1_loss(q_tot, y, beta=1.0, reduction="none") if loss_fn == "huber" else 0.5 * err.pow(2)
    )
    n = valid.sum().clamp(min=1.0)
    return {
        "total_loss": (per_step * valid).sum() / n,
        "td_error_abs": (err.detach().abs() * valid).sum() / n,
        "q_tot_mean": (q_tot.detach() * valid).sum() / n,
        "target_q_tot_mean": (y * valid).sum() / n,
        "agent_q_mean": (q_taken.detach().mean(-1) * valid).sum() / n,
    }


class FactoredQLearner(Learner):
    """The agent network and mixer (one optimizer over both) and their target copies."""

    def __init__(
        self,
        module: FactoredQ,
        config: ValueFactorizationConfigBase,
        device: torch.device,
        mask: slice | None = None,
    ) -> None:
        super().__init__(
            module, lr=config.lr, grad_clip=config.grad_clip, device=device, lr_schedule=config.lr_schedule
        )
        self.config = config
        self.mask = mask
        self.target: FactoredQ = build_target(module).to(device)  # type: ignore[assignment]

    def update(self, batch: Mapping[str, np.ndarray]) -> dict[str, float]:
        data = self.to_tensors(batch)
        assert isinstance(self.module, FactoredQ)
        loss = recurrent_td_loss if VALID in data else factored_td_loss
        terms = loss(
            self.module,
            self.target,
            data,
            gamma=self.config.gamma,
            double_q=self.config.double_q,
            loss_fn=self.config.td_error_loss_fn,
            mask=self.mask,
        )
        grad_norm = self.apply_gradients(terms["total_loss"])
        return {**{k: float(v.detach()) for k, v in terms.items()}, "grad_norm": grad_norm}

    def update_target(self) -> None:
        if self.config.tau >= 1.0:
            hard_update(self.target, self.module)
        else:
            polyak_update(self.target, self.module, self.config.tau)

    def get_state(self) -> dict[str, Any]:
        return {**super().get_state(), "target": self.target.state_dict()}

    def set_state(self, state: Mapping[str, Any]) -> None:
        super().set_state(state)
        self.target.load_state_dict(state["target"])


ConfigT = TypeVar("ConfigT", bound=ValueFactorizationConfigBase)


class ValueFactorizationAlgorithm(Algorithm[ConfigT]):
    """QMIX and VDN: they differ only in `build_mixer()`."""

    replays_observations = True  # its ReplayBuffer keeps (filtered) observations

    learner: FactoredQLearner
    runners: JointRunnerGroup  # type: ignore[assignment]

    def build_mixer(self, n_agents: int, state_dim: int) -> nn.Module:
        raise NotImplementedError

    def __init__(
        self, job: RLTrainingJob, *, run_dir: Path | None = None, parts: Parts | None = None
    ) -> None:
        # The base __init__ builds single-agent env runners; a joint learner has joint runners
        # (kuberl.core.multi_agent.joint_runner), in the driver or as Ray actors (resources.envRunners).
        parts = parts or Parts()
        self.bind_job(job, run_dir)
        res = self.spec.resources
        if res.learners > 1:
            raise SpecError([("spec.resources.learners", f"{self.name} trains with one learner")])
        if parts.ray_cpus is not None:
            from kuberl.core.ray_init import ensure_ray

            ensure_ray(parts.ray_cpus)
        self.joint_config = JointRunnerConfig(
            env=self.spec.env,
            env_config=dict(self.spec.env_config),
            num_envs=res.envs_per_runner,
            rollout_length=self.config.rollout_fragment_length,
            model=self.config.model,
            seed=self.spec.seed,
        )
        try:
            self.runners = JointRunnerGroup(
                self.joint_config,
                num_runners=res.env_runners,
                cpus_per_runner=res.cpus_per_runner,
                rng=self.np_rng,
            )
        except EnvError as exc:
            raise SpecError([("spec.env", str(exc))]) from None
        spaces = self.runners.spaces()
        if not isinstance(spaces.action_space, gym.spaces.Discrete):
            self.runners.stop()
            raise SpecError(
                [
                    (
                        "spec.env",
                        f"{self.name} needs a Discrete action space per agent, got {spaces.action_space}",
                    )
                ]
            )
        self.obs_space, self.action_space = spaces.obs_space, spaces.action_space
        self.n_agents, self.state_dim = spaces.n_agents, spaces.state_dim
        self.agent_ids = spaces.agents
        self.obs_filter = None
        self.writer = None
        # Evaluation plays joint episodes in the driver (play_episodes), never on evaluation actors;
        # the base __init__ that would build those is not called.
        self.evaluation_runners = None
        self.reset_progress()
        self.setup()
        self.hooks("on_algorithm_init", algorithm=self)

    def setup(self) -> None:
        cfg = self.config
        agent = build_agent_q(
            cfg.model,
            gym.spaces.flatdim(self.obs_space),
            self.n_agents,
            int(self.action_space.n),  # type: ignore[attr-defined]
        )
        module = FactoredQ(agent, self.build_mixer(self.n_agents, self.state_dim))
        self.mask = mask_slice(self.obs_space)
        self.learner = FactoredQLearner(
            module, cfg, driver_learner_device(self.spec.resources), mask=self.mask
        )
        seed = self.spec.seed
        self.recurrent = cfg.model.use_lstm
        self.buffer: ReplayBuffer | SequenceReplay = (
            SequenceReplay(cfg.buffer_size, seed=None if seed is None else seed + 7)
            if self.recurrent
            else ReplayBuffer(cfg.buffer_size, seed=None if seed is None else seed + 7)
        )
        self.last_target_update = 0
        self.num_updates = 0
        self.num_target_updates = 0

    def epsilon(self) -> float:
        return piecewise_linear(self.config.epsilon, self.timesteps)

    def act(
        self, obs: np.ndarray, *, epsilon: float, h: torch.Tensor | None = None
    ) -> tuple[np.ndarray, torch.Tensor | None]:
        """obs [N, agents, obs_dim] → (actions [N, agents], next GRU state) (decentralised: each agent's own
        Q-values; `h` [N, agents, cell] is the recurrent agent network's state, None for the MLP)."""
        module = self.learner.module
        assert isinstance(module, FactoredQ)
        x = torch.as_tensor(obs, device=self.learner.device)
        return act(module.agent, x, epsilon=epsilon, rng=self.np_rng, mask=self.mask, h=h)

    def collect(self) -> None:
        """One fragment from every joint runner, with the learner's weights and the current epsilon, into
        the replay buffer (runner by runner, in worker order)."""
        self.runners.sync(self.agent_weights(), {"epsilon": self.epsilon()})
        for rollout in self.runners.sample():
            if isinstance(self.buffer, SequenceReplay):
                self.buffer.add(rollout.sequences)
            else:
                self.buffer.add(rollout.batch)
            self.record_experience(
                episode_returns=rollout.episode_returns,
                episode_lengths=rollout.episode_lengths,
                env_steps=rollout.env_steps,
                env_restarts=0,
                filter_delta=None,
            )

    def agent_weights(self) -> dict[str, np.ndarray]:
        """The agent network's weights, what the runners act with (the mixer stays with the learner)."""
        module = self.learner.module
        assert isinstance(module, FactoredQ)
        return {k: v.detach().cpu().numpy() for k, v in module.agent.state_dict().items()}

    def training_step(self) -> StepOutcome:
        cfg = self.config
        t0 = time.perf_counter()
        self.collect()
        sample_s = time.perf_counter() - t0
        stats: dict[str, float] = {}
        trained = 0
        if self.timesteps >= cfg.num_steps_sampled_before_learning_starts:
            self.learner.update_lr(self.timesteps)
            for _ in range(cfg.num_updates_per_iteration):
                stats = self.learner.update(self.buffer.sample(cfg.train_batch_size))
                trained += cfg.train_batch_size
            self.num_updates += cfg.num_updates_per_iteration
            if self.timesteps - self.last_target_update >= cfg.target_network_update_freq:
                self.learner.update_target()
                self.last_target_update = self.timesteps
                self.num_target_updates += 1
        stats.update(
            epsilon=self.epsilon(),
            buffer_size=float(len(self.buffer)),
            lr=self.learner.lr,
            num_updates_lifetime=float(self.num_updates),
            num_target_updates=float(self.num_target_updates),
        )
        timers = {"sample": sample_s, "learn": time.perf_counter() - t0 - sample_s}
        return StepOutcome(rollouts=[], env_steps_trained=trained, learner_stats=stats, timers=timers)

    # -- the policy API ----------------------------------------------------------------------------
    def sync_weights(self) -> None:
        """The runners get the weights before every sample (collect); compute_actions and evaluation
        act with the learner's own network."""
        self.weights_version += 1

    def compute_actions(self, obs: Any, *, explore: bool = False) -> Any:
        """Greedy (or, explore, epsilon-greedy) actions for a joint observation: a dict {agent: obs} gives
        {agent: action}; an array [agents, obs_dim] (or [B, agents, obs_dim]) gives actions [agents] ([B, agents])."""
        if self.recurrent:
            raise ValueError(
                f"{self.name} with model.useLstm acts from each agent's GRU state: use "
                "compute_actions_with_state(obs, state) with state = initial_state(batch_size)"
            )
        kind, flat = self._joint_input(obs)
        actions, _ = self.act(flat, epsilon=self.epsilon() if explore else 0.0)
        return self._joint_output(actions, kind)

    def initial_state(self, batch_size: int = 1) -> TeamState | None:
        """A recurrent team's state at the start of `batch_size` episodes (every agent's GRU state at
        zeros, [batch_size, agents, lstmCellSize]); None for the feed-forward agent network."""
        if not self.recurrent:
            return None
        agent = self.agent_network()
        assert isinstance(agent, RecurrentAgentQ)
        return TeamState(agent.initial_state(batch_size))

    def compute_actions_with_state(
        self, obs: Any, state: PolicyState, *, explore: bool = False
    ) -> tuple[Any, TeamState]:
        """A recurrent team's actions (as compute_actions gives them) and its next state, one row of
        `state` per joint observation: the GRU step the runners take, from the caller's state."""
        if not self.recurrent:
            raise ValueError(f"{self.name} without model.useLstm is not recurrent: use compute_actions(obs)")
        if not isinstance(state, TeamState):
            raise ValueError(
                f"{self.name}'s state is a TeamState (initial_state()), not {type(state).__name__}"
            )
        kind, flat = self._joint_input(obs)
        if len(state) != len(flat):
            raise ValueError(f"state has {len(state)} rows for {len(flat)} joint observations")
        h = state.h.to(self.learner.device)
        actions, h_next = self.act(flat, epsilon=self.epsilon() if explore else 0.0, h=h)
        assert h_next is not None
        return self._joint_output(actions, kind), TeamState(h_next.cpu())

    def agent_network(self) -> AgentQ | RecurrentAgentQ:
        """The shared agent network (what the agents act with, and what `kuberl export` writes)."""
        module = self.learner.module
        assert isinstance(module, FactoredQ)
        return module.agent

    def _joint_input(self, obs: Any) -> tuple[str, np.ndarray]:
        """("dict" | "single" | "batch", flat joint observations [B, agents, obs_dim] float32)."""
        if isinstance(obs, Mapping):
            flat = np.stack(
                [np.asarray(gym.spaces.flatten(self.obs_space, obs[a]), np.float32) for a in self.agent_ids]
            )
            return "dict", flat[None]
        arr = np.asarray(obs, dtype=np.float32)
        return ("single", arr[None]) if arr.ndim == 2 else ("batch", arr)

    def _joint_output(self, actions: np.ndarray, kind: str) -> Any:
        if kind == "dict":
            return {a: int(x) for a, x in zip(self.agent_ids, actions[0], strict=True)}
        return actions[0] if kind == "single" else actions

    def play_episodes(
        self, n: int | None, *, explore: bool, timesteps: int | None = None
    ) -> tuple[list[float], list[int], int]:
        """Whole episodes (returns summed over agents) on a fresh env, one at a time."""
        if n is None and timesteps is None:
            raise ValueError("play_episodes needs a number of episodes or of timesteps")
        env_config = {**self.spec.env_config, **self.spec.evaluation.env_config}
        env = JointEnv(self.spec.env, env_config)
        base_seed = None if self.spec.seed is None else self.spec.seed + 1_000_003
        returns: list[float] = []
        lengths: list[int] = []
        steps = 0
        epsilon = self.epsilon() if explore else 0.0
        try:
            while (n is None or len(returns) < n) and (timesteps is None or steps < timesteps):
                obs, _ = env.reset(seed=None if base_seed is None else base_seed + len(returns))
                ret, length, done = 0.0, 0, False
                h = self.learner.module.agent.initial_state(1) if self.recurrent else None  # type: ignore[operator,union-attr]
                while not done and (timesteps is None or steps < timesteps):
                    actions, h = self.act(obs[None], epsilon=epsilon, h=h)
                    step = env.step(actions[0])
                    obs, ret, length, steps = step.obs, ret + step.reward, length + 1, steps + 1
                    done = step.terminated or step.truncated
                if done:
                    returns.append(ret)
                    lengths.append(length)
        finally:
            env.close()
        return returns, lengths, steps

    # -- checkpoints -------------------------------------------------------------------------------
    def algorithm_state(self) -> dict[str, Any]:
        return {
            "learner": self.learner.get_state(),
            "last_target_update": self.last_target_update,
            "num_updates": self.num_updates,
            "num_target_updates": self.num_target_updates,
            "buffer": self.buffer.state() if self.config.store_buffer_in_checkpoints else None,
        }

    def set_algorithm_state(self, state: Mapping[str, Any]) -> None:
        self.learner.set_state(state["learner"])
        self.last_target_update = int(state["last_target_update"])
        self.num_updates = int(state["num_updates"])
        self.num_target_updates = int(state["num_target_updates"])
        if state.get("buffer") is not None:
            self.buffer.set_state(state["buffer"])

    def stop(self) -> None:
        self.runners.stop()
