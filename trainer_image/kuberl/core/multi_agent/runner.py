"""MultiAgentEnvRunner: N copies of a PettingZoo env, one CPU copy of every policy, batched inference.

Each step, the observations of every agent that must act (in every env copy) are grouped by the
policy they map to and go through that policy in one forward pass, using the very RunnerPolicy
classes the single-agent algorithms use (`PolicySlot.policy`).

Experience is kept per agent: an agent's step is complete when its next observation arrives (or it
ends), with every reward it received in between, so parallel envs (everyone acts each step) and
turn-based AEC envs (an agent acts every other step) look the same. `sample()` returns, per trained
policy, a `Rollout` whose SampleBatch has the columns the single-agent EnvRunner produces for that
algorithm, laid out as one lane [T, 1]: the agents' trajectory fragments one after another, each
ending in `terminated` (the agent's episode ended), or `truncated` (a time limit, an agent that
vanished, or the cut at the end of this sample). `next_vf_preds` / `next_obs` make GAE and n-step
targets bootstrap exactly where the single-agent runner would. A step whose outcome is still unknown
at the cut (the agent waits for its turn) stays pending and goes out with the next sample.

With `record` (the job sets `spec.output`) the runner also returns every agent episode that ended, of
every policy (trained, frozen, random), whole and uncut: `AgentEpisode`, for the Parquet writer
(kuberl.core.offline.multi_agent_writer).
"""

from __future__ import annotations

import logging
import secrets
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from kuberl.core.action_spaces import to_env_single
from kuberl.core.callbacks import Episode, EpisodeMetrics, Hooks
from kuberl.core.env_factory import seeds_for
from kuberl.core.env_runner import Rollout
from kuberl.core.models import flatten_obs, load_numpy_weights
from kuberl.core.multi_agent.env import AgentEnv, AgentStep, make_agent_env
from kuberl.core.multi_agent.mapping import EpisodeInfo, PolicyMapper, SelfPlaySeats, seat_for
from kuberl.core.multi_agent.masking import RandomPolicy
from kuberl.core.policy import PolicyFactory, RunnerPolicy
from kuberl.core.preprocess import batch_of_one
from kuberl.core.sample_batch import Columns, SampleBatch
from kuberl.spec.algorithms import ModelConfig

log = logging.getLogger(__name__)

RANDOM_POLICY: PolicyFactory = RandomPolicy
LATEST = -1  # self-play: the opponent plays the learning policy's current weights
RANDOM = -2  # self-play: the opponent plays uniformly random (legal) moves


@dataclass(frozen=True)
class PolicySlot:
    """One policy as the runner builds it (what RunnerConfig says for a single-agent runner)."""

    obs_space: gym.Space[Any]
    action_space: gym.Space[Any]
    policy: PolicyFactory
    model: ModelConfig
    options: dict[str, Any] = field(default_factory=dict)
    store_next_obs: bool = False
    trained: bool = True


@dataclass(frozen=True)
class MultiAgentRunnerConfig:
    env: str
    env_config: dict[str, Any]
    num_envs: int
    policies: dict[str, PolicySlot]
    rules: tuple[tuple[str, str], ...] = ()
    mapping_function: str | None = None
    self_play: SelfPlaySeats | None = None
    seed: int | None = None
    worker_index: int = 0
    record: bool = False  # return whole agent episodes (spec.output)
    callbacks: str | None = None  # config.callbacks, built in the runner


@dataclass
class AgentEpisode:
    """One agent's whole episode, step by step, as spec.output records it. `env_episode` identifies the
    env episode (runner id, episode counter) so the agents of one game can be joined."""

    agent_id: str
    policy_id: str
    env_episode: tuple[int, int]
    obs: np.ndarray  # [T, obs_dim] flat float32
    actions: np.ndarray  # [T] or [T, action_dim]
    rewards: np.ndarray  # [T]
    terminateds: np.ndarray  # [T]; only the last step can be True
    truncateds: np.ndarray  # [T]; only the last step can be True (never the cut of a sample)
    next_obs: np.ndarray  # [T, obs_dim]
    action_logp: np.ndarray  # [T]; NaN where the policy reports none (random policies, DQN…)


@dataclass
class MultiAgentSample:
    """One runner's sample: per trained policy a Rollout, plus env-level episode statistics."""

    rollouts: dict[str, Rollout]
    env_steps: int
    episode_returns: list[float] = field(default_factory=list)  # summed over agents
    episode_lengths: list[int] = field(default_factory=list)  # env steps
    episode_ids: list[int] = field(default_factory=list)  # runner-unique; 1..num_envs are each copy's first
    # Per policy (trained or not): (return, length) of each agent episode that ended.
    policy_episodes: dict[str, list[tuple[float, int]]] = field(default_factory=dict)
    # Self-play: the learner's result per finished game, +1 win, 0 draw, −1 loss.
    outcomes: list[int] = field(default_factory=list)
    outcome_ids: list[int] = field(default_factory=list)  # the episode id of each outcome
    agent_steps: dict[str, int] = field(default_factory=dict)
    worker_index: int = 0
    agent_episodes: list[AgentEpisode] = field(default_factory=list)  # with config.record
    # With config.callbacks: what the episodes that ended logged.
    episode_metrics: EpisodeMetrics | None = None


@dataclass
class _Step:
    obs: np.ndarray
    extras: dict[str, np.ndarray]
    reward: float = 0.0
    terminated: bool = False
    truncated: bool = False
    next_obs: np.ndarray | None = None


@dataclass
class _Episode:
    id: int
    seat: str | None = None
    opponent: int = LATEST
    policy_of: dict[str, str] = field(default_factory=dict)
    agent_return: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    agent_length: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    agent_ended: set[str] = field(default_factory=set)
    ret: float = 0.0
    length: int = 0
    pending: dict[str, _Step] = field(default_factory=dict)
    fragments: dict[str, list[_Step]] = field(default_factory=dict)
    flat: dict[str, np.ndarray] = field(default_factory=dict)  # next observations, already flattened
    # With config.record: every completed step per agent, copied when completed (the cut at the end of
    # a sample later marks a fragment's last step truncated, which a recording must not see).
    recorded: dict[str, list[_Step]] = field(default_factory=dict)
    # With config.callbacks: what the hooks see of this episode.
    cb: Episode | None = None


def stack_raw(space: gym.Space[Any], items: list[Any]) -> Any:
    """Single observations → one batch in the layout a vector env would give (for flatten_obs)."""
    if isinstance(space, gym.spaces.Dict):
        return {k: stack_raw(sub, [o[k] for o in items]) for k, sub in space.spaces.items()}
    if isinstance(space, gym.spaces.Tuple):
        return tuple(stack_raw(sub, [o[i] for o in items]) for i, sub in enumerate(space.spaces))
    return np.stack([np.asarray(o) for o in items])


class MultiAgentEnvRunner:
    """Runs in the driver or as a Ray actor (see MultiAgentRunnerGroup)."""

    def __init__(self, config: MultiAgentRunnerConfig) -> None:
        torch.set_num_threads(1)
        self.config = config
        self.hooks = Hooks(config.callbacks)
        self.envs: list[AgentEnv] = [
            make_agent_env(config.env, config.env_config) for _ in range(config.num_envs)
        ]
        self.gen = torch.Generator()
        if config.seed is not None:
            self.gen.manual_seed(config.seed * 7919 + config.worker_index)
        else:
            self.gen.seed()
        self.rng = np.random.default_rng(None if config.seed is None else [config.seed, config.worker_index])
        self.policies: dict[str, RunnerPolicy] = {
            pid: slot.policy(slot.obs_space, slot.action_space, slot.model, dict(slot.options))
            for pid, slot in config.policies.items()
        }
        for policy in self.policies.values():
            policy.module.eval()
        self.mapper = PolicyMapper(
            list(config.policies),
            rules=config.rules,
            function=config.mapping_function,
            self_play=config.self_play,
        )
        self.pool: list[RunnerPolicy] = []
        self.random_opponent: RunnerPolicy | None = None
        if config.self_play is not None and config.self_play.random_probability > 0:
            slot = config.policies[config.self_play.opponent]
            self.random_opponent = RANDOM_POLICY(slot.obs_space, slot.action_space, slot.model, {})
        self._episode_counter = 0
        self._obs: list[dict[str, Any]] = []
        self._episodes: list[_Episode] = []
        seeds = seeds_for(config.seed, config.worker_index, config.num_envs)
        for i, env in enumerate(self.envs):
            self._obs.append(env.reset(seed=None if seeds is None else seeds[i]))
            self._episodes.append(self._new_episode(i))
        self._finished: dict[str, list[list[_Step]]] = defaultdict(list)
        # Random per runner instance: a recreated runner restarts its episode counter.
        self.uid = secrets.randbits(31)
        self._agent_episodes: list[AgentEpisode] = []

    # -- state -----------------------------------------------------------------------------------
    def spaces(self) -> dict[str, tuple[gym.Space[Any], gym.Space[Any]]]:
        return {pid: (s.obs_space, s.action_space) for pid, s in self.config.policies.items()}

    def ping(self) -> int:
        return self.config.worker_index

    def set_state(
        self,
        state: dict[str, Any],
        filter_state: dict[str, Any] | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        """`state`: {"weights": {pid: numpy weights}, "options": {pid: options}, "pool": [weights…] or None}."""
        # Only this runner's policies: a recreated runner may get the last state from before a policy was
        # removed (reconfigure).
        for pid, weights in state.get("weights", {}).items():
            if pid in self.policies:
                load_numpy_weights(self.policies[pid].module, weights)
        for pid, opts in state.get("options", {}).items():
            if opts and pid in self.policies:
                self.policies[pid].set_options(opts)
        pool = state.get("pool")
        sp = self.config.self_play
        if pool is not None and sp is not None:
            slot = self.config.policies[sp.opponent]
            while len(self.pool) < len(pool):
                self.pool.append(
                    slot.policy(slot.obs_space, slot.action_space, slot.model, dict(slot.options))
                )
            del self.pool[len(pool) :]
            for policy, weights in zip(self.pool, pool, strict=True):
                load_numpy_weights(policy.module, weights)
                policy.module.eval()

    def reconfigure(self, config: MultiAgentRunnerConfig) -> None:
        """Policies added or removed and a new mapping (MultiAgentAlgorithm.add_policy/remove_policy).
        Episodes under way keep the policies their agents mapped to, as in RLlib; an episode that maps
        an agent to a removed policy is cut short and restarted (its unfinished steps are dropped)."""
        config = replace(config, worker_index=self.config.worker_index)
        removed = set(self.policies) - set(config.policies)
        for pid, slot in config.policies.items():
            if pid not in self.policies:
                self.policies[pid] = slot.policy(
                    slot.obs_space, slot.action_space, slot.model, dict(slot.options)
                )
                self.policies[pid].module.eval()
        for pid in removed:
            del self.policies[pid]
            self._finished.pop(pid, None)
        self.config = config
        self.mapper = PolicyMapper(
            list(config.policies),
            rules=config.rules,
            function=config.mapping_function,
            self_play=config.self_play,
        )
        for i, ep in enumerate(self._episodes):
            if removed & set(ep.policy_of.values()):
                self._obs[i] = self.envs[i].reset()
                self._episodes[i] = self._new_episode(i)

    # -- episodes --------------------------------------------------------------------------------
    def _new_episode(self, env_index: int) -> _Episode:
        self._episode_counter += 1
        ep = _Episode(id=self._episode_counter)
        sp = self.config.self_play
        if sp is not None:
            ep.seat = seat_for(self.envs[env_index].possible_agents, self.rng)
            if sp.use_pool and self.rng.random() < sp.random_probability:
                ep.opponent = RANDOM
            elif sp.use_pool and self.pool and self.rng.random() >= sp.latest_probability:
                ep.opponent = int(self.rng.integers(len(self.pool)))
        if self.hooks.active:
            # policy_of is shared: the hooks see each agent's policy as soon as the mapping picks it.
            ep.cb = Episode(env_index=env_index, worker_index=self.config.worker_index, id=ep.id)
            ep.cb.policy_of = ep.policy_of
            self.hooks("on_episode_start", episode=ep.cb, env_runner=self, env_index=env_index)
        return ep

    def _policy_of(self, env_index: int, ep: _Episode, agent: str) -> str:
        pid = ep.policy_of.get(agent)
        if pid is None:
            info = EpisodeInfo(id=ep.id, env_index=env_index, worker_index=self.config.worker_index)
            pid = ep.policy_of[agent] = self.mapper(agent, info, seat=ep.seat)
        return pid

    def _actor_key(self, ep: _Episode, pid: str) -> tuple[str, int]:
        """Which network acts for `pid` in this episode: the policy itself, or a self-play opponent."""
        sp = self.config.self_play
        if sp is not None and sp.use_pool and pid == sp.opponent:
            return (sp.learning, LATEST) if ep.opponent == LATEST else (pid, ep.opponent)
        return (pid, LATEST)

    def _flat(self, pid: str, raw: Any) -> np.ndarray:
        space = self.config.policies[pid].obs_space
        return flatten_obs(space, batch_of_one(space, raw))[0]

    # -- sampling --------------------------------------------------------------------------------
    def sample(self, num_steps: int, *, explore: bool = True) -> MultiAgentSample:
        """Step every env copy `num_steps` times; return the experience completed meanwhile."""
        out = MultiAgentSample(rollouts={}, env_steps=0, worker_index=self.config.worker_index)
        if self.hooks.active:
            out.episode_metrics = EpisodeMetrics()
        episodes: dict[str, list[tuple[float, int]]] = defaultdict(list)
        for _ in range(num_steps):
            actions = self._act(explore)
            for i, env in enumerate(self.envs):
                if not actions[i]:  # nobody acts (an env that ended without anyone observing): restart it
                    self._end_episode(i, out, episodes)
                    continue
                self._record(i, env.step(actions[i]), out, episodes)
                out.env_steps += 1
        # The cut: every fragment so far goes out; a step still waiting for its outcome stays pending.
        for ep in self._episodes:
            for agent, steps in ep.fragments.items():
                if steps:
                    self._finished[ep.policy_of[agent]].append(steps)
            ep.fragments = {}
        out.policy_episodes = dict(episodes)
        out.agent_episodes, self._agent_episodes = self._agent_episodes, []
        for pid, fragments in self._finished.items():
            out.agent_steps[pid] = sum(len(f) for f in fragments)
            slot = self.config.policies[pid]
            if slot.trained and fragments:
                rollout = Rollout(batch=self._build(pid, fragments), worker_index=self.config.worker_index)
                rollout.episode_returns = [r for r, _ in episodes.get(pid, [])]
                rollout.episode_lengths = [n for _, n in episodes.get(pid, [])]
                out.rollouts[pid] = rollout
        self._finished = defaultdict(list)
        self.hooks("on_sample_end", env_runner=self, samples=out)
        return out

    def _act(self, explore: bool) -> list[dict[str, Any]]:
        groups: dict[tuple[str, int], list[tuple[int, str, np.ndarray]]] = defaultdict(list)
        for i, obs in enumerate(self._obs):
            ep = self._episodes[i]
            for agent, raw in obs.items():
                pid = self._policy_of(i, ep, agent)
                flat = ep.flat.pop(agent, None)
                if flat is None:
                    flat = self._flat(pid, raw)
                groups[self._actor_key(ep, pid)].append((i, agent, flat))
        actions: list[dict[str, Any]] = [{} for _ in self.envs]
        for (pid, snapshot), members in groups.items():
            if snapshot == LATEST:
                policy = self.policies[pid]
            elif snapshot == RANDOM:
                assert self.random_opponent is not None
                policy = self.random_opponent
            else:
                policy = self.pool[snapshot]
            batch = torch.from_numpy(np.stack([f for _, _, f in members]).astype(np.float32))
            with torch.inference_mode():
                cols = {
                    k: v.numpy() for k, v in policy.act(batch, explore=explore, generator=self.gen).items()
                }
            for row, (i, agent, flat) in enumerate(members):
                ep = self._episodes[i]
                slot = self.config.policies[ep.policy_of[agent]]
                a = cols[Columns.ACTIONS][row]
                space = slot.action_space
                if isinstance(space, gym.spaces.Box):
                    actions[i][agent] = np.clip(a, space.low, space.high)
                elif isinstance(space, gym.spaces.Discrete):
                    actions[i][agent] = int(a)
                else:
                    actions[i][agent] = to_env_single(space, a)
                ep.pending[agent] = _Step(obs=flat, extras={k: v[row] for k, v in cols.items()})
        return actions

    def _record(
        self, i: int, res: AgentStep, out: MultiAgentSample, episodes: dict[str, list[tuple[float, int]]]
    ) -> None:
        ep = self._episodes[i]
        ep.length += 1
        for agent, r in res.rewards.items():
            ep.ret += r
            ep.agent_return[agent] += r
            if agent in ep.pending:
                ep.pending[agent].reward += r
        for agent in list(ep.pending):
            ended = agent in res.terminated or agent in res.truncated
            if not ended and agent not in res.obs:
                continue  # waits for its turn; its rewards keep accumulating
            step = ep.pending.pop(agent)
            pid = ep.policy_of[agent]
            if ended:
                step.terminated = agent in res.terminated
                step.truncated = not step.terminated
                final = res.final_obs.get(agent)
                step.next_obs = self._flat(pid, final) if final is not None else step.obs
            else:
                step.next_obs = ep.flat[agent] = self._flat(pid, res.obs[agent])
            self._complete(ep, agent, step)
        if ep.cb is not None:
            cb = ep.cb
            cb.length = ep.length
            cb.last_reward = float(sum(res.rewards.values()))
            cb.total_reward = ep.ret
            for agent, r in res.rewards.items():
                key = (agent, ep.policy_of.get(agent, ""))
                cb.agent_rewards[key] = cb.agent_rewards.get(key, 0.0) + float(r)
            self.hooks("on_episode_step", episode=cb, env_runner=self, env_index=i)
        # In the order agents first acted, not the sets' order: that follows str hashing (PYTHONHASHSEED)
        # and decided the order of the policy's fragments, so two seeded runs trained differently.
        leaving = res.terminated | res.truncated
        for agent in [a for a in ep.policy_of if a in leaving]:
            self._end_agent(ep, agent, episodes)
        if res.done:
            self._end_episode(i, out, episodes)
        else:
            self._obs[i] = res.obs

    def _complete(self, ep: _Episode, agent: str, step: _Step) -> None:
        """`agent`'s step has its outcome: it joins the agent's fragment (and its recording)."""
        ep.agent_length[agent] += 1
        ep.fragments.setdefault(agent, []).append(step)
        if self.config.record:
            ep.recorded.setdefault(agent, []).append(
                _Step(step.obs, step.extras, step.reward, step.terminated, step.truncated, step.next_obs)
            )

    def _recording(self, ep: _Episode, agent: str, pid: str) -> AgentEpisode | None:
        steps = ep.recorded.pop(agent, None)
        if not steps:
            return None
        logp = [s.extras.get(Columns.ACTION_LOGP) for s in steps]
        return AgentEpisode(
            agent_id=agent,
            policy_id=pid,
            env_episode=(self.uid, ep.id),
            obs=np.stack([s.obs for s in steps]).astype(np.float32),
            actions=np.stack([np.asarray(s.extras[Columns.ACTIONS]) for s in steps]),
            rewards=np.array([s.reward for s in steps], dtype=np.float32),
            terminateds=np.array([s.terminated for s in steps], dtype=bool),
            truncateds=np.array([s.truncated for s in steps], dtype=bool),
            next_obs=np.stack([s.obs if s.next_obs is None else s.next_obs for s in steps]).astype(
                np.float32
            ),
            action_logp=np.array([np.nan if x is None else float(x) for x in logp], dtype=np.float32),
        )

    def _end_agent(self, ep: _Episode, agent: str, episodes: dict[str, list[tuple[float, int]]]) -> None:
        pid = ep.policy_of.get(agent)
        if pid is None or agent in ep.agent_ended:
            return  # never acted (it has no policy in this episode), or already counted
        ep.agent_ended.add(agent)
        recording = self._recording(ep, agent, pid) if self.config.record else None
        if recording is not None:
            self._agent_episodes.append(recording)
        episodes[pid].append((float(ep.agent_return[agent]), int(ep.agent_length[agent])))
        steps = ep.fragments.pop(agent, None)
        if steps:
            self._finished[pid].append(steps)

    def _end_episode(
        self, i: int, out: MultiAgentSample, episodes: dict[str, list[tuple[float, int]]]
    ) -> None:
        ep = self._episodes[i]
        for agent, step in ep.pending.items():  # the env ended without saying how: a truncation
            step.truncated = True
            step.next_obs = step.obs
            self._complete(ep, agent, step)
        ep.pending = {}
        for agent in list(ep.policy_of):
            self._end_agent(ep, agent, episodes)
        out.episode_returns.append(float(ep.ret))
        out.episode_lengths.append(int(ep.length))
        if ep.cb is not None and out.episode_metrics is not None:
            self.hooks("on_episode_end", episode=ep.cb, env_runner=self, env_index=i)
            out.episode_metrics.add(ep.cb)
        out.episode_ids.append(ep.id)
        if ep.seat is not None:
            mine = ep.agent_return.get(ep.seat, 0.0)
            others = [r for a, r in ep.agent_return.items() if a != ep.seat]
            best_other = max(others) if others else 0.0
            out.outcomes.append(1 if mine > best_other else 0 if mine == best_other else -1)
            out.outcome_ids.append(ep.id)
        self._obs[i] = self.envs[i].reset()
        self._episodes[i] = self._new_episode(i)

    def _build(self, pid: str, fragments: list[list[_Step]]) -> SampleBatch:
        """One lane [T, 1] of `pid`'s fragments, each ending terminated or truncated."""
        steps = [s for f in fragments for s in f]
        ends = np.cumsum([len(f) for f in fragments]) - 1
        for k in ends:
            if not (steps[k].terminated or steps[k].truncated):
                steps[k].truncated = True  # the cut: bootstrap from the next observation
        term = np.array([s.terminated for s in steps], dtype=bool)
        trunc = np.array([s.truncated for s in steps], dtype=bool)
        batch = SampleBatch(
            {
                Columns.OBS: np.stack([s.obs for s in steps]).astype(np.float32),
                Columns.REWARDS: np.array([s.reward for s in steps], dtype=np.float32),
                Columns.TERMINATEDS: term,
                Columns.TRUNCATEDS: trunc,
            }
        )
        for key in steps[0].extras:
            batch[key] = np.stack([s.extras[key] for s in steps])
        next_obs = np.stack([s.next_obs if s.next_obs is not None else s.obs for s in steps]).astype(
            np.float32
        )
        slot = self.config.policies[pid]
        if slot.store_next_obs:
            batch[Columns.NEXT_OBS] = next_obs
        if Columns.VF_PREDS in batch:
            vf = batch[Columns.VF_PREDS]
            next_vf = np.zeros_like(vf)
            next_vf[:-1] = vf[1:]  # inside a fragment, V(s') is the next step's prediction
            boot = np.flatnonzero(trunc)
            if len(boot):
                with torch.inference_mode():
                    values = self.policies[pid].value(torch.from_numpy(next_obs[boot]))
                assert values is not None, "a policy that records vf_preds must implement value()"
                next_vf[boot] = values.numpy()
            next_vf[term] = 0.0
            batch[Columns.NEXT_VF_PREDS] = next_vf
        return SampleBatch({k: v[:, None] for k, v in batch.items()})

    def close(self) -> None:
        for env in self.envs:
            env.close()
