"""Value factorization for cooperative multi-agent teams, shared by QMIX and VDN (kuberl.algorithms.qmix,
kuberl.algorithms.vdn): one joint learner over every agent of a PettingZoo ParallelEnv.

Each agent's Q-values come from one agent network shared by all agents (its input: the agent's
observation and a one-hot agent id); a mixer combines the Q-values of the actions the agents took into
the team's Q_tot(s, a), trained by a TD loss on the team reward from a replay of joint transitions:

    y = r + γ (1 − terminated) · mixer_target(Q_target_i(o'_i, a*_i), s'),
    a*_i = argmax_a Q_i(o'_i, a)  (double Q: the online agent network; else the target one)

Because the mixer is monotonic in every agent's Q-value (VDN: a sum; QMIX: non-negative weights from
hypernetworks of the state), each agent's greedy action maximises Q_tot: the agents act decentralised,
each from its own observation, and `compute_actions` needs no state. Experience is sampled in the
driver from `envsPerRunner` copies of the env (kuberl.core.multi_agent.joint), epsilon-greedy per agent.
Agent networks are MLPs (the paper's are recurrent; the envs here need no memory).
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

from kuberl.algorithms.base import Algorithm, Parts, StepOutcome
from kuberl.algorithms.families.q_learning import build_target
from kuberl.core.env_factory import EnvError, seeds_for
from kuberl.core.learner import Learner, driver_learner_device
from kuberl.core.models import mlp
from kuberl.core.multi_agent.joint import JointEnv
from kuberl.core.replay import ReplayBuffer
from kuberl.core.schedules import piecewise_linear
from kuberl.core.target import hard_update, polyak_update
from kuberl.results import TrainResult
from kuberl.spec import RLTrainingJob, SpecError
from kuberl.spec.algorithms.value_factorization import ValueFactorizationConfigBase

log = logging.getLogger(__name__)

OBS, STATE, ACTIONS, REWARD = "obs", "state", "actions", "reward"
NEXT_OBS, NEXT_STATE, TERMINATED = "next_obs", "next_state", "terminated"


# ---------------------------------------------------------------------------------------------------
# Networks
# ---------------------------------------------------------------------------------------------------


class AgentQ(nn.Module):
    """Q(o_i, ·) of every agent, one network for all: the input is the observation and a one-hot id."""

    def __init__(
        self, obs_dim: int, n_agents: int, n_actions: int, hidden: list[int], activation: str
    ) -> None:
        super().__init__()
        self.n_agents = n_agents
        self.net = mlp([obs_dim + n_agents, *hidden], activation, out=n_actions, out_gain=0.01)
        self.register_buffer("agent_ids", torch.eye(n_agents), persistent=False)

    def agent_ids_buffer(self) -> torch.Tensor:
        ids: torch.Tensor = self.get_buffer("agent_ids")
        return ids

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """obs [B, agents, obs_dim] → Q [B, agents, actions]."""
        ids = self.agent_ids_buffer().expand(obs.shape[0], -1, -1)
        out: torch.Tensor = self.net(torch.cat([obs, ids], dim=-1))
        return out


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

    def __init__(self, agent: AgentQ, mixer: nn.Module) -> None:
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
) -> dict[str, torch.Tensor]:
    """The joint TD loss on Q_tot (module docs) as named terms."""
    q = online.agent(batch[OBS])  # [B, agents, actions]
    q_taken = q.gather(2, batch[ACTIONS].long().unsqueeze(-1)).squeeze(-1)  # [B, agents]
    q_tot = online.mixer(q_taken, batch[STATE])
    with torch.no_grad():
        q_next_target = target.agent(batch[NEXT_OBS])
        chooser = online.agent(batch[NEXT_OBS]) if double_q else q_next_target
        best = chooser.argmax(dim=-1, keepdim=True)
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


class FactoredQLearner(Learner):
    """The agent network and mixer (one optimizer over both) and their target copies."""

    def __init__(self, module: FactoredQ, config: ValueFactorizationConfigBase, device: torch.device) -> None:
        super().__init__(
            module, lr=config.lr, grad_clip=config.grad_clip, device=device, lr_schedule=config.lr_schedule
        )
        self.config = config
        self.target: FactoredQ = build_target(module).to(device)  # type: ignore[assignment]

    def update(self, batch: Mapping[str, np.ndarray]) -> dict[str, float]:
        data = self.to_tensors(batch)
        assert isinstance(self.module, FactoredQ)
        terms = factored_td_loss(
            self.module,
            self.target,
            data,
            gamma=self.config.gamma,
            double_q=self.config.double_q,
            loss_fn=self.config.td_error_loss_fn,
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


# ---------------------------------------------------------------------------------------------------
# Sampling: the driver steps every copy of the joint env
# ---------------------------------------------------------------------------------------------------


class DriverSampling:
    """The RunnerGroup the base class reports on: sampling happens in the driver, so there is one
    always-healthy "runner" that never restarts."""

    restarts = 0
    num_healthy = 1

    def report(self) -> TrainResult:
        return {}

    def interrupt(self) -> None:
        """Sampling takes bounded time: nothing to cut short."""

    def stop(self) -> None:
        """Nothing outside the driver to stop (the envs are closed by the algorithm)."""


def epsilon_greedy(q: torch.Tensor, epsilon: float, rng: np.random.Generator) -> np.ndarray:
    """q [N, agents, actions] → actions [N, agents]: each agent independently random with probability ε."""
    greedy = q.argmax(dim=-1).cpu().numpy()
    if epsilon <= 0.0:
        return np.asarray(greedy)
    random = rng.integers(0, q.shape[-1], size=greedy.shape)
    return np.asarray(np.where(rng.random(greedy.shape) < epsilon, random, greedy))


ConfigT = TypeVar("ConfigT", bound=ValueFactorizationConfigBase)


class ValueFactorizationAlgorithm(Algorithm[ConfigT]):
    """QMIX and VDN: they differ only in `build_mixer()`."""

    replays_observations = True  # its ReplayBuffer keeps (filtered) observations

    learner: FactoredQLearner

    def build_mixer(self, n_agents: int, state_dim: int) -> nn.Module:
        raise NotImplementedError

    def __init__(
        self, job: RLTrainingJob, *, run_dir: Path | None = None, parts: Parts | None = None
    ) -> None:
        # The base __init__ builds single-agent env runners; a joint learner samples its own joint envs.
        self.bind_job(job, run_dir)
        res = self.spec.resources
        if res.learners > 1:
            raise SpecError([("spec.resources.learners", f"{self.name} trains with one learner")])
        try:
            self.envs = [JointEnv(self.spec.env, self.spec.env_config) for _ in range(res.envs_per_runner)]
        except EnvError as exc:
            raise SpecError([("spec.env", str(exc))]) from None
        first = self.envs[0]
        if not isinstance(first.action_space, gym.spaces.Discrete):
            for env in self.envs:
                env.close()
            raise SpecError(
                [
                    (
                        "spec.env",
                        f"{self.name} needs a Discrete action space per agent, got {first.action_space}",
                    )
                ]
            )
        self.obs_space, self.action_space = first.obs_space, first.action_space
        self.n_agents, self.state_dim = first.n_agents, first.state_dim
        self.agent_ids = first.agents
        self.runners = DriverSampling()  # type: ignore[assignment]
        self.obs_filter = None
        self.writer = None
        self.reset_progress()
        self.setup()
        self._reset_envs()
        self.hooks("on_algorithm_init", algorithm=self)

    def setup(self) -> None:
        cfg = self.config
        agent = AgentQ(
            gym.spaces.flatdim(self.obs_space),
            self.n_agents,
            int(self.action_space.n),  # type: ignore[attr-defined]
            list(cfg.model.fcnet_hiddens),
            cfg.model.fcnet_activation,
        )
        module = FactoredQ(agent, self.build_mixer(self.n_agents, self.state_dim))
        self.learner = FactoredQLearner(module, cfg, driver_learner_device(self.spec.resources))
        seed = self.spec.seed
        self.buffer = ReplayBuffer(cfg.buffer_size, seed=None if seed is None else seed + 7)
        self.last_target_update = 0
        self.num_updates = 0
        self.num_target_updates = 0

    def _reset_envs(self) -> None:
        seeds = seeds_for(self.spec.seed, 0, len(self.envs)) or [None] * len(self.envs)
        joint = [env.reset(seed=s) for env, s in zip(self.envs, seeds, strict=True)]
        self.cur_obs = np.stack([o for o, _ in joint])
        self.cur_state = np.stack([s for _, s in joint])
        self.ep_return = np.zeros(len(self.envs))
        self.ep_len = np.zeros(len(self.envs), dtype=np.int64)

    def epsilon(self) -> float:
        return piecewise_linear(self.config.epsilon, self.timesteps)

    def act(self, obs: np.ndarray, *, epsilon: float) -> np.ndarray:
        """obs [N, agents, obs_dim] → actions [N, agents] (decentralised: each agent's own Q-values)."""
        module = self.learner.module
        assert isinstance(module, FactoredQ)
        with torch.no_grad():
            q = module.agent(torch.as_tensor(obs, device=self.learner.device))
        return epsilon_greedy(q, epsilon, self.np_rng)

    def collect(self) -> None:
        """rolloutFragmentLength vector steps of every env into the replay buffer."""
        cols: dict[str, list[Any]] = {
            k: [] for k in (OBS, STATE, ACTIONS, REWARD, NEXT_OBS, NEXT_STATE, TERMINATED)
        }
        returns: list[float] = []
        lengths: list[int] = []
        for _ in range(self.config.rollout_fragment_length):
            actions = self.act(self.cur_obs, epsilon=self.epsilon())
            for i, env in enumerate(self.envs):
                step = env.step(actions[i])
                for k, v in (
                    (OBS, self.cur_obs[i].copy()), (STATE, self.cur_state[i].copy()), (ACTIONS, actions[i]),
                    (REWARD, step.reward), (NEXT_OBS, step.obs), (NEXT_STATE, step.state),
                    (TERMINATED, float(step.terminated)),
                ):  # fmt: skip
                    cols[k].append(v)
                self.ep_return[i] += step.reward
                self.ep_len[i] += 1
                if step.terminated or step.truncated:
                    returns.append(float(self.ep_return[i]))
                    lengths.append(int(self.ep_len[i]))
                    self.ep_return[i], self.ep_len[i] = 0.0, 0
                    obs, state = env.reset()
                else:
                    obs, state = step.obs, step.state
                self.cur_obs[i], self.cur_state[i] = obs, state
        batch = {k: np.asarray(v, dtype=np.int64 if k == ACTIONS else np.float32) for k, v in cols.items()}
        self.buffer.add(batch)
        self.record_experience(
            episode_returns=returns,
            episode_lengths=lengths,
            env_steps=len(batch[REWARD]),
            env_restarts=0,
            filter_delta=None,
        )

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
        """The driver acts with the learner's own network: nothing to send."""
        self.weights_version += 1

    def compute_actions(self, obs: Any, *, explore: bool = False) -> Any:
        """Greedy (or, explore, epsilon-greedy) actions for a joint observation: a dict {agent: obs} gives
        {agent: action}; an array [agents, obs_dim] (or [B, agents, obs_dim]) gives actions [agents] ([B, agents])."""
        epsilon = self.epsilon() if explore else 0.0
        if isinstance(obs, Mapping):
            flat = np.stack(
                [np.asarray(gym.spaces.flatten(self.obs_space, obs[a]), np.float32) for a in self.agent_ids]
            )
            actions = self.act(flat[None], epsilon=epsilon)[0]
            return {a: int(x) for a, x in zip(self.agent_ids, actions, strict=True)}
        arr = np.asarray(obs, dtype=np.float32)
        single = arr.ndim == 2
        actions = self.act(arr[None] if single else arr, epsilon=epsilon)
        return actions[0] if single else actions

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
                while not done and (timesteps is None or steps < timesteps):
                    step = env.step(self.act(obs[None], epsilon=epsilon)[0])
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
        for env in self.envs:
            env.close()
