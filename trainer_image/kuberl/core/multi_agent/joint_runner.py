"""Joint env runners for the value-factorization learners (QMIX, VDN): each steps `num_envs` copies of a
cooperative ParallelEnv (kuberl.core.multi_agent.joint) with a CPU copy of the shared agent network,
every agent epsilon-greedy from its own observation, and returns joint transitions for the replay.

They run in the driver (`envRunners: 0`, or one runner under `localMode: auto`) or as Ray actors, with
the recovery of every runner group (kuberl.core.runner_group.RunnerActorGroup): the learner's weights
and the current epsilon reach them before each sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from kuberl.core.env_factory import seeds_for
from kuberl.core.models import load_numpy_weights
from kuberl.core.multi_agent.agent_q import AgentQ, RecurrentAgentQ, act, build_agent_q
from kuberl.core.multi_agent.joint import JointEnv
from kuberl.core.multi_agent.masking import mask_slice
from kuberl.core.runner_group import RunnerActorGroup
from kuberl.spec.algorithms import ModelConfig

OBS, STATE, ACTIONS, REWARD = "obs", "state", "actions", "reward"
NEXT_OBS, NEXT_STATE, TERMINATED = "next_obs", "next_state", "terminated"
COLUMNS = (OBS, STATE, ACTIONS, REWARD, NEXT_OBS, NEXT_STATE, TERMINATED)


@dataclass(frozen=True)
class JointRunnerConfig:
    """What a joint runner needs, small and picklable (the envs are built inside the runner)."""

    env: str
    env_config: dict[str, Any]
    num_envs: int
    rollout_length: int  # vector steps per sample()
    model: ModelConfig
    seed: int | None = None
    worker_index: int = 0


@dataclass
class JointRollout:
    """`rollout_length` vector steps of joint transitions (columns COLUMNS, one row per env step)."""

    batch: dict[str, np.ndarray]
    episode_returns: list[float] = field(default_factory=list)
    episode_lengths: list[int] = field(default_factory=list)
    worker_index: int = 0
    # Recurrent agent network (model.useLstm): the sequences that ended in this rollout (Sequence).
    sequences: list[dict[str, np.ndarray]] = field(default_factory=list)

    @property
    def env_steps(self) -> int:
        return len(self.batch[REWARD])


@dataclass(frozen=True)
class JointSpaces:
    """One agent's observation and action space, the team's size, its state size and agent names."""

    obs_space: gym.Space[Any]
    action_space: gym.Space[Any]
    n_agents: int
    state_dim: int
    agents: list[str]


class Sequence:
    """One env's steps since its episode (or its previous sequence) began, for a recurrent agent network:
    obs/state hold T+1 entries (the last is s' of the last step), actions/reward T; h0 is the agents'
    GRU state at the first step. It ends with the episode or after model.maxSeqLen steps."""

    def __init__(self, obs: np.ndarray, state: np.ndarray, h0: np.ndarray) -> None:
        self.obs, self.state, self.h0 = [obs.copy()], [state.copy()], h0.copy()
        self.actions: list[np.ndarray] = []
        self.reward: list[float] = []

    def add(self, action: np.ndarray, reward: float, obs: np.ndarray, state: np.ndarray) -> None:
        self.actions.append(action)
        self.reward.append(reward)
        self.obs.append(obs.copy())
        self.state.append(state.copy())

    def arrays(self, terminated: bool) -> dict[str, np.ndarray]:
        return {
            OBS: np.asarray(self.obs, np.float32),
            STATE: np.asarray(self.state, np.float32),
            ACTIONS: np.asarray(self.actions, np.int64),
            REWARD: np.asarray(self.reward, np.float32),
            TERMINATED: np.asarray(terminated, np.float32),
            "h0": self.h0.astype(np.float32),
        }


class JointRunner:
    def __init__(self, config: JointRunnerConfig, rng: np.random.Generator | None = None) -> None:
        self.config = config
        if config.worker_index > 0:
            # A runner actor: one thread, the forward pass is tiny and runners share the cores. (In the
            # driver the learner's thread setting stays as it is.)
            torch.set_num_threads(1)
        self.envs = [JointEnv(config.env, config.env_config) for _ in range(config.num_envs)]
        first = self.envs[0]
        self.joint_spaces = JointSpaces(
            first.obs_space, first.action_space, first.n_agents, first.state_dim, list(first.agents)
        )
        # The driver's runner draws from the algorithm's generator (checkpointed with it); an actor from
        # its own stream, distinct per worker.
        if rng is not None:
            self.rng = rng
        elif config.seed is None:
            self.rng = np.random.default_rng()
        else:
            self.rng = np.random.default_rng([config.seed, config.worker_index])
        self.mask = mask_slice(first.obs_space)  # where each agent's action_mask lies, if it has one
        self.module: AgentQ | RecurrentAgentQ | None = None
        self.recurrent = bool(config.model.use_lstm)
        self.h: torch.Tensor | None = None  # recurrent: the agents' GRU states [envs, agents, cell]
        self.sequences: list[Sequence] = []
        self.epsilon = 1.0
        seeds = seeds_for(config.seed, config.worker_index, len(self.envs)) or [None] * len(self.envs)
        joint = [env.reset(seed=s) for env, s in zip(self.envs, seeds, strict=True)]
        self.cur_obs = np.stack([o for o, _ in joint])
        self.cur_state = np.stack([s for _, s in joint])
        self.ep_return = np.zeros(len(self.envs))
        self.ep_len = np.zeros(len(self.envs), dtype=np.int64)

    def spaces(self) -> JointSpaces:
        return self.joint_spaces

    def ping(self) -> int:
        return self.config.worker_index

    def set_state(self, weights: dict[str, np.ndarray], options: dict[str, Any] | None = None) -> None:
        if self.module is None:
            sp = self.joint_spaces
            # Built without touching the process's torch RNG (in the driver, the learner's draws must not
            # depend on whether its runner is local): the weights are overwritten at once anyway.
            with torch.random.fork_rng(devices=[]):
                self.module = build_agent_q(
                    self.config.model,
                    gym.spaces.flatdim(sp.obs_space),
                    sp.n_agents,
                    int(sp.action_space.n),  # type: ignore[attr-defined]
                )
            if self.recurrent:
                assert isinstance(self.module, RecurrentAgentQ)
                self.h = self.module.initial_state(len(self.envs))
                self.sequences = [
                    Sequence(self.cur_obs[i], self.cur_state[i], self.h[i].numpy())
                    for i in range(len(self.envs))
                ]
        load_numpy_weights(self.module, weights)
        if options and "epsilon" in options:
            self.epsilon = float(options["epsilon"])

    def act(self, obs: np.ndarray) -> np.ndarray:
        assert self.module is not None, "set_state() first: the runner has no weights yet"
        actions, self.h = act(
            self.module, torch.as_tensor(obs), epsilon=self.epsilon, rng=self.rng, mask=self.mask, h=self.h
        )
        return actions

    def sample(self) -> JointRollout:
        """rollout_length vector steps of every env."""
        cols: dict[str, list[Any]] = {k: [] for k in COLUMNS}
        rollout = JointRollout(batch={}, worker_index=self.config.worker_index)
        for _ in range(self.config.rollout_length):
            actions = self.act(self.cur_obs)
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
                if self.recurrent:
                    self._extend_sequence(i, actions[i], step, rollout)
                if step.terminated or step.truncated:
                    rollout.episode_returns.append(float(self.ep_return[i]))
                    rollout.episode_lengths.append(int(self.ep_len[i]))
                    self.ep_return[i], self.ep_len[i] = 0.0, 0
                    obs, state = env.reset()
                    self.cur_obs[i], self.cur_state[i] = obs, state
                    if self.recurrent:
                        self._restart_sequence(i)
                    continue
                self.cur_obs[i], self.cur_state[i] = step.obs, step.state
        rollout.batch = {
            k: np.asarray(v, dtype=np.int64 if k == ACTIONS else np.float32) for k, v in cols.items()
        }
        return rollout

    def _extend_sequence(self, i: int, action: np.ndarray, step: Any, rollout: JointRollout) -> None:
        """Env i's step into its sequence; an ended episode (or a full sequence) goes to the rollout and
        the next one starts: from a zero state after an episode, from the carried one otherwise."""
        assert self.h is not None
        seq = self.sequences[i]
        seq.add(action, step.reward, step.obs, step.state)
        done = step.terminated or step.truncated
        if done:
            rollout.sequences.append(seq.arrays(step.terminated))
            self.h[i] = 0.0
        elif len(seq.actions) >= self.config.model.max_seq_len:
            rollout.sequences.append(seq.arrays(False))
        else:
            return
        # The next sequence starts where this env is now (after an episode: set by the reset, below).
        self.sequences[i] = Sequence(step.obs, step.state, self.h[i].numpy())

    def _restart_sequence(self, i: int) -> None:
        assert self.h is not None
        self.sequences[i] = Sequence(self.cur_obs[i], self.cur_state[i], self.h[i].numpy())

    def close(self) -> None:
        for env in self.envs:
            env.close()


class JointRunnerGroup(RunnerActorGroup):
    """The joint runners: one in the driver (`num_runners` 0, sharing the algorithm's generator) or
    `num_runners` Ray actors sampled in parallel."""

    runner_cls = JointRunner
    kind = "joint env runner"
    base: JointRunnerConfig
    local: JointRunner | None

    def __init__(
        self,
        base: JointRunnerConfig,
        *,
        num_runners: int,
        cpus_per_runner: float = 1.0,
        rng: np.random.Generator | None = None,
    ) -> None:
        super().__init__(base, num_runners=num_runners, cpus_per_runner=cpus_per_runner)
        if self.local is not None and rng is not None:
            self.local.rng = rng

    def spaces(self) -> JointSpaces:
        if self.local is not None:
            return self.local.spaces()
        spaces: JointSpaces = self._ray().get(self.actors[0].spaces.remote())
        return spaces

    def sync(self, weights: dict[str, np.ndarray], options: dict[str, Any] | None = None) -> None:
        self._state = (weights, options)
        if self.local is not None:
            self.local.set_state(weights, options)
            return
        ray = self._ray()
        ref = ray.put(weights)  # one copy in the object store for every actor
        futures = [a.set_state.remote(ref, options) for a in self.actors]
        self._wait_all(futures, lambda i: self.actors[i].set_state.remote(ref, options))

    def sample(self) -> list[JointRollout]:
        if self.local is not None:
            return [self.local.sample()]
        futures = [a.sample.remote() for a in self.actors]
        rollouts: list[JointRollout] = self._wait_all(futures, lambda i: self.actors[i].sample.remote())
        return rollouts
