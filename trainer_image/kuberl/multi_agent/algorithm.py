"""MultiAgentAlgorithm: one unmodified single-agent algorithm per trained policy, fed by shared
multi-agent env runners (RLlib's multi-agent setup, without a multi-agent learner API).

`build_algorithm` picks this class when `spec.multiAgent` is set. Each iteration every trained
policy's algorithm runs its own `train()` (its `sample()` is served by the ExperienceHub), then
self-play snapshots are taken. The result has the usual top-level keys, computed over whole env
episodes (returns summed over agents), plus `policies` (per-policy agent-episode statistics),
`learner` (per-policy learner stats) and `self_play` (win/draw/loss rates of the learning policy).
"""

from __future__ import annotations

import logging
import re
import time
from collections import deque
from collections.abc import Collection, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from kuberl.algorithms.base import (
    DEFAULT_POLICY,
    EPISODE_WINDOW,
    Algorithm,
    Parts,
    Policy,
    TrainingRun,
    rng_state,
    set_rng_state,
)
from kuberl.algorithms.registry import algorithm_class
from kuberl.core.multi_agent.env import probe_spaces
from kuberl.core.multi_agent.group import MultiAgentRunnerGroup
from kuberl.core.multi_agent.mapping import EpisodeInfo, PolicyMapper, SelfPlaySeats, policy_spaces
from kuberl.core.multi_agent.masking import mask_slice, masked_model_config
from kuberl.core.multi_agent.runner import (
    RANDOM_POLICY,
    MultiAgentEnvRunner,
    MultiAgentRunnerConfig,
    PolicySlot,
)
from kuberl.core.offline.multi_agent_writer import MultiAgentExperienceWriter
from kuberl.multi_agent.hub import ExperienceHub, FeedRunnerGroup
from kuberl.multi_agent.self_play import OUTCOME_WINDOW, OpponentPool, play_vs_random, rates
from kuberl.results import TrainResult
from kuberl.spec import RLTrainingJob, SpecError
from kuberl.spec.algorithms import AlgorithmConfigBase, capabilities
from kuberl.spec.combinations import combination_problems
from kuberl.spec.common import EvaluationSpec
from kuberl.spec.multi_agent import MultiAgentSpec

log = logging.getLogger(__name__)

# Policy ids name folders (run_dir/policies/ID) and metric labels.
_POLICY_ID = re.compile(r"[A-Za-z0-9_.-]+")


def _stats(values: list[float] | deque[float]) -> dict[str, float | None]:
    if not values:
        return {"episode_return_mean": None, "episode_return_min": None, "episode_return_max": None}
    return {
        "episode_return_mean": float(np.mean(values)),
        "episode_return_min": float(np.min(values)),
        "episode_return_max": float(np.max(values)),
    }


class MultiAgentAlgorithm(TrainingRun):
    """Not an Algorithm: it has one Algorithm per policy with weights (`subs`) and offers the same API
    (kuberl.algorithms.api.AlgorithmAPI: train, save, restore, evaluate, the policy API). From
    TrainingRun it shares the counters, episode windows and checkpoint files of a run."""

    def __init__(self, job: RLTrainingJob, *, run_dir: Path | None = None) -> None:
        self.bind_job(job, run_dir)
        self.name = job.spec.algorithm  # checkpoints record it, as a single-agent run's
        self.config: AlgorithmConfigBase = job.spec.config
        ma = job.spec.multi_agent
        if ma is None:
            raise SpecError([("spec.multiAgent", "required for a multi-agent algorithm")])
        self.ma: MultiAgentSpec = ma
        check_supported(job)
        seed = self.spec.seed
        res = self.spec.resources
        if res.env_runners > 0:
            from kuberl.core.ray_init import ensure_ray

            ensure_ray(res.env_runners * res.cpus_per_runner)
        else:
            # The in-driver runner runs torch on one thread (MultiAgentEnvRunner); set it before the
            # policies' networks are initialised, as a single-agent in-driver run does (its EnvRunner is
            # built before setup()): orthogonal init's QR gives other floats on another thread count, so
            # the initial weights depended on whatever an earlier run in the process had left.
            torch.set_num_threads(1)

        sp = ma.self_play
        seats = (
            SelfPlaySeats(
                sp.policy, sp.opponent_policy, sp.latest_probability, sp.random_opponent_probability
            )
            if sp is not None
            else None
        )
        rules = tuple((r.agent_pattern, r.policy) for r in ma.policy_mapping)
        mapper = PolicyMapper(
            list(ma.policies), rules=rules, function=ma.policy_mapping_function, self_play=seats
        )
        try:
            self.agent_spaces = probe_spaces(self.spec.env, self.spec.env_config)
            spaces = policy_spaces(self.agent_spaces, mapper)
        except ValueError as exc:
            raise SpecError([("spec.multiAgent", str(exc))]) from None
        self.policy_spaces = spaces

        self.hub = ExperienceHub()
        self.agent_writer: MultiAgentExperienceWriter | None = None
        if self.spec.output is not None:  # every agent's whole episodes (docs/offline.md)
            self.agent_writer = MultiAgentExperienceWriter(self.spec.output, spaces)
            writer = self.agent_writer
            self.hub.recorder = lambda episodes, worker: writer.add(episodes, worker_index=worker)
        self.trained = ma.trained_policies()
        self.subs: dict[str, Algorithm] = {}
        self.feeds: dict[str, FeedRunnerGroup] = {}
        slots: dict[str, PolicySlot] = {}
        for index, (pid, pspec) in enumerate(ma.policies.items()):
            obs_space, action_space = spaces[pid]
            if pspec.random:
                slots[pid] = PolicySlot(
                    obs_space, action_space, RANDOM_POLICY, self.config.model, trained=False
                )
                continue
            slots[pid] = self._add_sub(pid, index, spaces[pid])
            if pspec.checkpoint:
                self._load_frozen(pid, pspec.checkpoint, pspec.checkpoint_policy or pid)
            if pid in self.trained:
                self.hub.wanted[pid] = self._wanted(pid)
        if sp is not None:
            # Opponents are snapshots of the learner: the same network class and options.
            learner_slot = slots[sp.policy]
            slots[sp.opponent_policy] = PolicySlot(
                learner_slot.obs_space,
                learner_slot.action_space,
                learner_slot.policy,
                learner_slot.model,
                dict(learner_slot.options),
                trained=False,
            )
        self.ma_config = MultiAgentRunnerConfig(
            env=self.spec.env,
            env_config=dict(self.spec.env_config),
            num_envs=res.envs_per_runner,
            policies=slots,
            rules=rules,
            mapping_function=ma.policy_mapping_function,
            self_play=seats,
            seed=seed,
            record=self.agent_writer is not None,
            callbacks=self.config.callbacks,
        )
        self.group = MultiAgentRunnerGroup(
            self.ma_config, num_runners=res.env_runners, cpus_per_runner=res.cpus_per_runner
        )
        self.hub.group = self.group
        self.pool = OpponentPool(sp.pool_size) if sp is not None else None
        if self.pool is not None and sp is not None:
            self.pool.add(self.subs[sp.policy].get_weights())
            self.hub.set_pool(self.pool.as_list())
        self.hub.push()

        self.reset_progress()
        self.policy_returns: dict[str, deque[tuple[float, int]]] = {
            pid: deque(maxlen=EPISODE_WINDOW) for pid in ma.policies
        }
        self.policy_episodes: dict[str, int] = dict.fromkeys(ma.policies, 0)
        self.policy_steps: dict[str, int] = dict.fromkeys(ma.policies, 0)
        self.outcomes: deque[int] = deque(maxlen=OUTCOME_WINDOW)
        self.games_total = 0
        self.league: dict[str, Any] | None = None  # what add_policy/remove_policy changed
        self.hooks("on_algorithm_init", algorithm=self)

    def _add_sub(self, pid: str, index: int, spaces: tuple[gym.Space[Any], gym.Space[Any]]) -> PolicySlot:
        """Build policy `pid`'s algorithm, fed by the hub; returns the runners' slot for it."""
        feed = FeedRunnerGroup(self.hub, pid, spaces)
        self.subs[pid] = self._build_sub(pid, index, feed)
        self.feeds[pid] = feed
        rc = feed.runner_config
        assert rc is not None, "the policy's algorithm did not build its runner group"
        return PolicySlot(
            spaces[0],
            spaces[1],
            rc.policy,
            rc.model,
            dict(rc.policy_options),
            rc.store_next_obs,
            trained=pid in self.trained,
        )

    def _wanted(self, pid: str) -> int:
        """Agent steps of `pid` its algorithm trains on per iteration (what the hub collects for it)."""
        rc = self.feeds[pid].runner_config
        assert rc is not None
        return rc.rollout_length * rc.num_envs * max(self.spec.resources.env_runners, 1)

    def _build_sub(self, pid: str, index: int, feed: FeedRunnerGroup) -> Algorithm:
        """The single-agent algorithm of one policy, with runners that are the hub's feed."""
        spec = self.spec
        config = spec.config
        masks = config.capabilities.action_masks
        if mask_slice(feed.spaces()[0]) is not None and config.model.custom_model is None:
            # "model": the actor-critic network applies the mask (kuberl.core.multi_agent.masking); "own":
            # the algorithm's network and runner policy read it from the observation space themselves.
            if masks == "model":
                config = config.model_copy(update={"model": masked_model_config(config.model)})
            elif masks == "none":
                log.warning(
                    "policy %r observes an action mask, but %s does not apply it (only %s do); illegal actions "
                    "are possible",
                    pid,
                    spec.algorithm,
                    ", ".join(n for n, c in capabilities().items() if c.action_masks != "none"),
                )
        sub_spec = spec.model_copy(
            update={
                "multi_agent": None,
                "output": None,  # recorded per agent by the multi-agent writer, not per policy
                "evaluation": EvaluationSpec(),
                # The user's callbacks run once, in this multi-agent algorithm, not in each policy's.
                "config": config.model_copy(update={"callbacks": None}),
                # Distinct initial weights and sampling streams per policy.
                "seed": None if spec.seed is None else spec.seed + index,
            }
        )
        sub_job = self.job.model_copy(update={"spec": sub_spec})
        # The same Algorithm class a single-agent job gets, with the hub's feed as its runner group.
        cls = algorithm_class(spec.algorithm)
        return cls(sub_job, run_dir=self.run_dir / "policies" / pid, parts=Parts(runner_group=feed.attach))

    def _load_frozen(self, pid: str, uri: str, source_policy: str) -> None:
        """Weights for `pid` from a single-agent checkpoint, or from `source_policy` in a multi-agent one."""
        from kuberl.algorithms.base import STATE_FILE
        from kuberl.checkpoint import CheckpointError, load_checkpoint
        from kuberl.core.state_io import loads_state

        try:
            loaded = load_checkpoint(uri)
        except CheckpointError as exc:
            raise SpecError([(f"spec.multiAgent.policies.{pid}.checkpoint", str(exc))]) from None
        try:
            state = loads_state(loaded.files[STATE_FILE], where=f"{loaded.info.uri}/{STATE_FILE}")
        except CheckpointError as exc:
            raise SpecError([(f"spec.multiAgent.policies.{pid}.checkpoint", str(exc))]) from None
        if state.get("multi_agent"):
            if source_policy not in state["policies"]:
                known = ", ".join(state["policies"])
                raise SpecError(
                    [
                        (
                            f"spec.multiAgent.policies.{pid}.checkpointPolicy",
                            f"{source_policy!r} not in {uri} ({known})",
                        )
                    ]
                )
            state = state["policies"][source_policy]
        if state.get("algorithm") != self.name:
            raise SpecError(
                [
                    (
                        f"spec.multiAgent.policies.{pid}.checkpoint",
                        f"is a {state.get('algorithm')} checkpoint, not {self.name}",
                    )
                ]
            )
        self.subs[pid].set_algorithm_state(state["algo"])
        self.subs[pid].sync_weights()

    # -- training --------------------------------------------------------------------------------
    def train(self) -> TrainResult:
        start = time.perf_counter()
        results = {pid: self.subs[pid].train() for pid in self.trained}
        for pid, r in results.items():
            self.hooks(
                "on_learn_on_batch",
                algorithm=self,
                policy_id=pid,
                samples=[],
                result=r["learner"]["default_policy"],
            )
        stats = self.hub.drain()
        self.reset_iteration_episodes()
        self.iter_returns = list(stats.episode_returns)
        self.iter_lengths = list(stats.episode_lengths)
        self.iter_metrics = stats.episode_metrics
        self.iteration += 1
        self.timesteps += stats.env_steps
        self.returns.extend(stats.episode_returns)
        self.lengths.extend(stats.episode_lengths)
        self.episodes_total += len(stats.episode_returns)
        for pid, eps in stats.policy_episodes.items():
            self.policy_returns[pid].extend(eps)
            self.policy_episodes[pid] += len(eps)
        for pid, n in stats.agent_steps.items():
            self.policy_steps[pid] += n
        self.outcomes.extend(stats.outcomes)
        self.games_total += len(stats.outcomes)
        trained_steps = sum(int(r["num_env_steps_trained"]) for r in results.values())
        self.timesteps_trained += trained_steps

        self_play: dict[str, Any] | None = None
        sp = self.ma.self_play
        if sp is not None and self.pool is not None:
            snapshot = self.iteration % sp.snapshot_every_iterations == 0
            if snapshot:
                self.pool.add(self.subs[sp.policy].get_weights())
                self.hub.set_pool(self.pool.as_list())
            self_play = {
                "policy": sp.policy,
                **rates(self.outcomes),
                "games_total": self.games_total,
                "games_this_iter": len(stats.outcomes),
                "pool_size": len(self.pool.snapshots),
                "snapshots_total": self.pool.taken,
            }
            if snapshot and sp.evaluation_games:
                self_play["vs_random"] = self.evaluate_vs_random(sp.evaluation_games)
        elapsed = time.perf_counter() - start
        self.time_total += elapsed
        sample_time = sum(r["timers"].get("sample", 0.0) for r in results.values())
        result = self._ma_result(results, elapsed, stats.env_steps, len(stats.episode_returns), trained_steps)
        result["env_steps_per_s"] = stats.env_steps / max(sample_time, 1e-9)
        if self_play is not None:
            result["self_play"] = self_play
        if self.spec.evaluation.interval and self.iteration % self.spec.evaluation.interval == 0:
            result["evaluation"] = self.evaluate()
        self.add_episode_metrics(result)
        self.hooks("on_train_result", algorithm=self, result=result)
        return result

    def _ma_result(
        self, results: Mapping[str, TrainResult], elapsed: float, sampled: int, episodes: int, trained: int
    ) -> TrainResult:
        overall = self.window_stats()
        policies: dict[str, Any] = {}
        for pid, window in self.policy_returns.items():
            policies[pid] = {
                **_stats([r for r, _ in window]),
                "episode_len_mean": float(np.mean([n for _, n in window])) if window else None,
                "episodes_total": self.policy_episodes[pid],
                "agent_steps_total": self.policy_steps[pid],
                "trained": pid in self.trained,
            }
        return {
            "training_iteration": self.iteration,
            "timesteps_total": self.timesteps,
            "num_env_steps_sampled": sampled,
            "num_env_steps_sampled_lifetime": self.timesteps,
            "num_env_steps_trained": trained,
            "num_env_steps_trained_lifetime": self.timesteps_trained,
            "episodes_total": self.episodes_total,
            "episodes_this_iter": episodes,
            "episode_return_mean": overall["episode_return_mean"],
            "episode_return_min": overall["episode_return_min"],
            "episode_return_max": overall["episode_return_max"],
            "episode_len_mean": overall["episode_len_mean"],
            "time_this_iter_s": elapsed,
            "time_total_s": self.time_total,
            "timers": {f"{pid}/{k}": v for pid, r in results.items() for k, v in r["timers"].items()},
            "learner": {pid: r["learner"]["default_policy"] for pid, r in results.items()},
            "policies": policies,
            "env_runners": {
                "num_healthy": self.group.num_healthy,
                "restarts_total": self.group.restarts,
                "env_restarts_total": self.env_restarts,
            },
        }

    # -- leagues: RLlib's add_policy / remove_policy ------------------------------------------------
    def add_policy(
        self,
        policy_id: str,
        *,
        from_policy: str | None = None,
        weights: Mapping[str, np.ndarray] | None = None,
        policy_mapping: Mapping[str, str] | None = None,
        mapping_fn: str | None = None,
        policies_to_train: Collection[str] | None = None,
    ) -> Policy:
        """Add policy `policy_id` while training, as RLlib's `Algorithm.add_policy` (self-play leagues).

        Its network is `from_policy`'s (default: the learning policy) — same spaces, model and algorithm
        — with `from_policy`'s current weights, or `weights` when given (a snapshot: an independent copy).
        `policy_mapping` ({agent pattern: policy}, ordered, as spec.multiAgent.policyMapping) or
        `mapping_fn` (an import path, as policyMappingFunction) replaces the mapping; episodes under way
        keep theirs. It is frozen unless `policies_to_train` (the whole new set of trained policies)
        names it. Runners in the driver and Ray runners get it; checkpoints keep it."""
        if not policy_id or not _POLICY_ID.fullmatch(policy_id):
            raise ValueError(f"policy id {policy_id!r}: use letters, digits, '_', '-' and '.' only")
        if policy_id in self.ma_config.policies:
            raise ValueError(f"policy {policy_id!r} exists already")
        if self.agent_writer is not None:
            raise ValueError("add_policy: spec.output records the spec's policies; a league run records none")
        template = from_policy or self.default_policy()
        if template not in self.subs:
            raise ValueError(
                f"from_policy={template!r}: no policy with weights by that name ({', '.join(self.subs)})"
            )
        source = weights if weights is not None else self.subs[template].get_weights()
        copied = {k: np.array(v, copy=True) for k, v in source.items()}
        self._grow(policy_id, template)
        self.subs[policy_id].set_weights(copied)
        self._apply_league(policy_mapping, mapping_fn, policies_to_train)
        return self.get_policy(policy_id)

    def remove_policy(
        self,
        policy_id: str,
        *,
        policy_mapping: Mapping[str, str] | None = None,
        mapping_fn: str | None = None,
        policies_to_train: Collection[str] | None = None,
    ) -> None:
        """Remove policy `policy_id` (RLlib's `Algorithm.remove_policy`), optionally with a new mapping.
        Refused while the mapping (the new one, if given) still maps an agent to it. An episode under
        way that uses it is cut short and restarted."""
        if policy_id not in self.ma_config.policies:
            raise ValueError(f"no policy {policy_id!r} (policies: {', '.join(self.ma_config.policies)})")
        sp = self.ma.self_play
        if sp is not None and policy_id in (sp.policy, sp.opponent_policy):
            raise ValueError(
                f"policy {policy_id!r} holds a spec.multiAgent.selfPlay seat; it cannot be removed"
            )
        if policies_to_train is None:
            policies_to_train = [p for p in self.trained if p != policy_id]
        self._apply_league(policy_mapping, mapping_fn, policies_to_train, removing=policy_id)

    def _grow(self, pid: str, template: str) -> None:
        """Build an added policy's algorithm with `template`'s network (no mapping change yet)."""
        self.policy_spaces[pid] = self.policy_spaces[template]
        slot = self._add_sub(pid, len(self.subs) + len(self.ma.policies), self.policy_spaces[pid])
        self.ma_config = replace(self.ma_config, policies={**self.ma_config.policies, pid: slot})
        self.policy_returns[pid] = deque(maxlen=EPISODE_WINDOW)
        self.policy_episodes[pid] = 0
        self.policy_steps[pid] = 0
        league = self._league()
        league["added"][pid] = template

    def _league(self) -> dict[str, Any]:
        """What add_policy/remove_policy changed, for checkpoints (absent from those of other runs)."""
        if self.league is None:
            self.league = {"added": {}, "removed": [], "rules": [], "function": None, "trained": []}
        return self.league

    def _apply_league(
        self,
        policy_mapping: Mapping[str, str] | None,
        mapping_fn: str | None,
        policies_to_train: Collection[str] | None,
        *,
        removing: str | None = None,
    ) -> None:
        """Check the new mapping and trained set against the policies, then hand them to the runners."""
        if policy_mapping is not None and mapping_fn is not None:
            raise ValueError("give policy_mapping or mapping_fn, not both")
        if self.ma.self_play is not None and (policy_mapping is not None or mapping_fn is not None):
            raise ValueError("spec.multiAgent.selfPlay maps the seats; a run with it takes no policy_mapping")
        keep = policy_mapping is None and mapping_fn is None
        rules = (
            self.ma_config.rules
            if keep
            else tuple((str(a), str(p)) for a, p in (policy_mapping or {}).items())
        )
        function = self.ma_config.mapping_function if keep else mapping_fn
        policies = {pid: s for pid, s in self.ma_config.policies.items() if pid != removing}
        trained = list(self.trained if policies_to_train is None else policies_to_train)
        unknown = [p for p in trained if p not in self.subs or p == removing]
        if unknown or not trained:
            raise ValueError(
                f"policies_to_train {trained}: each must be a policy with weights ({', '.join(self.subs)}), "
                "and at least one"
            )
        used = self._mapped(self.ma_config.policies, rules, function)  # the removed one still counts
        if removing is not None and removing in used:
            raise ValueError(
                f"policy {removing!r} is still mapped to agents {', '.join(sorted(used[removing]))}: "
                "give a policy_mapping or mapping_fn that maps no agent to it"
            )
        if removing is not None:
            self._drop(removing)
            league = self._league()
            if league["added"].pop(removing, None) is None:
                league["removed"].append(removing)
        self.trained = trained
        self.hub.wanted = {pid: self._wanted(pid) for pid in trained}
        for pid in list(self.hub.buffers):
            if pid not in trained:
                self.hub.buffers.pop(pid)
                self.hub.buffered.pop(pid, None)
        league = self._league()
        league.update(rules=[list(r) for r in rules], function=function, trained=list(trained))
        self.ma_config = replace(
            self.ma_config,
            policies={pid: replace(s, trained=pid in trained) for pid, s in policies.items()},
            rules=rules,
            mapping_function=function,
        )
        self.group.reconfigure(self.ma_config)
        self.hub.dirty = True
        self.hub.push()

    def _drop(self, pid: str) -> None:
        """Forget a removed policy: its algorithm, statistics and what the hub holds of it."""
        sub = self.subs.pop(pid, None)
        if sub is not None:
            sub.stop()
        self.feeds.pop(pid, None)
        self.policy_returns.pop(pid, None)
        self.policy_episodes.pop(pid, None)
        self.policy_steps.pop(pid, None)
        self.policy_spaces.pop(pid, None)
        self.hub.weights.pop(pid, None)
        self.hub.options.pop(pid, None)
        self.hub.buffers.pop(pid, None)
        self.hub.buffered.pop(pid, None)

    def _mapped(
        self, policies: Mapping[str, PolicySlot], rules: tuple[tuple[str, str], ...], function: str | None
    ) -> dict[str, set[str]]:
        """{policy: agents} the mapping gives over a few probe episodes; a ValueError when an agent maps
        to no policy, to an unknown one, or to one whose spaces are not the agent's."""
        sp = self.ma_config.self_play
        mapper = PolicyMapper(list(policies), rules=rules, function=function, self_play=sp)
        agents = list(self.agent_spaces)
        used: dict[str, set[str]] = {}
        for ep in range(8 if function is not None else 1):
            for agent in agents:
                pid = mapper(agent, EpisodeInfo(id=ep), seat=agents[ep % len(agents)])
                if pid not in policies:
                    raise ValueError(f"the mapping sends agent {agent!r} to {pid!r}, which is not a policy")
                slot = policies[pid]
                if (slot.obs_space, slot.action_space) != self.agent_spaces[agent]:
                    raise ValueError(f"agent {agent!r} cannot act with policy {pid!r}: their spaces differ")
                used.setdefault(pid, set()).add(agent)
        return used

    def _restore_league(self, league: Mapping[str, Any]) -> None:
        """Rebuild a checkpoint's added (and drop its removed) policies and its mapping, before the
        policies' states load."""
        for pid, template in league["added"].items():
            if pid not in self.ma_config.policies:
                self._grow(pid, template)
        self.ma_config = replace(
            self.ma_config,
            rules=tuple((str(a), str(p)) for a, p in league["rules"]),
            mapping_function=league["function"],
        )
        for pid in league["removed"]:
            if pid in self.ma_config.policies:
                self._apply_league(None, None, league["trained"], removing=pid)
        self._apply_league(None, None, league["trained"])
        self.league = {**self._league(), "added": dict(league["added"]), "removed": list(league["removed"])}

    # -- inference and evaluation ------------------------------------------------------------------
    def default_policy(self) -> str:
        return self.ma.self_play.policy if self.ma.self_play is not None else self.trained[0]

    def policy_module(self) -> torch.nn.Module:
        return self.subs[self.default_policy()].policy_module()

    def get_policy(self, policy_id: str = DEFAULT_POLICY) -> Policy:
        """Policy `policy_id` (trained or frozen); "default_policy", when no policy has that name, is
        the learning one. Its get_weights()/set_weights() are that policy's alone."""
        pid = (
            self.default_policy() if policy_id == DEFAULT_POLICY and policy_id not in self.subs else policy_id
        )
        if pid not in self.subs:
            raise KeyError(
                f"{policy_id!r}: no such network policy (policies with weights: {', '.join(self.subs)})"
            )
        return Policy(self.subs[pid], pid)

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        """The learning policy's weights; per policy: get_policy(policy_id).set_weights(weights)."""
        self.get_policy().set_weights(weights)

    def get_weights(self) -> dict[str, np.ndarray]:
        return self.subs[self.default_policy()].get_weights()

    def compute_actions(
        self, obs: np.ndarray, *, explore: bool = False, policy_id: str | None = None
    ) -> np.ndarray:
        """Actions of one policy (default: the learning one) for a batch of its agents' observations."""
        return self.subs[policy_id or self.default_policy()].compute_actions(obs, explore=explore)

    def evaluate(
        self, episodes: int | None = None, *, explore: bool | None = None, timesteps: int | None = None
    ) -> dict[str, Any]:
        """Self-play: games against a random opponent. Otherwise: whole episodes with the current policies
        (one per fresh env copy, so short episodes are not over-represented). No timesteps unit: the spec
        refuses evaluation.timesteps with multiAgent (kuberl.spec.combinations)."""
        if timesteps is not None:
            raise ValueError("multi-agent evaluation plays whole episodes; give episodes, not timesteps")
        n = episodes or self.spec.evaluation.episodes
        explore = self.spec.evaluation.explore if explore is None else explore
        if self.ma.self_play is not None:
            return self.evaluate_vs_random(n, explore=explore)
        from dataclasses import replace

        runner = MultiAgentEnvRunner(
            replace(
                self.ma_config,
                record=False,  # evaluation episodes are not training experience
                num_envs=n,
                seed=None if self.spec.seed is None else self.spec.seed + 1_000_003,
            )
        )
        try:
            runner.set_state({"weights": {pid: sub.get_weights() for pid, sub in self.subs.items()}})
            found: dict[int, tuple[float, int]] = {}
            for _ in range(100_000):
                s = runner.sample(1, explore=explore)
                for ep_id, ret, length in zip(
                    s.episode_ids, s.episode_returns, s.episode_lengths, strict=True
                ):
                    if ep_id <= n:
                        found.setdefault(ep_id, (ret, length))
                if len(found) >= n:
                    break
        finally:
            runner.close()
        rets = [r for r, _ in found.values()]
        return {
            **_stats(rets),
            "episode_len_mean": float(np.mean([n for _, n in found.values()])) if found else None,
            "episodes": len(found),
        }

    def evaluate_vs_random(self, games: int, *, explore: bool = False) -> dict[str, Any]:
        learning = self.default_policy()
        return play_vs_random(
            self.ma_config, learning, self.subs[learning].get_weights(), games=games, explore=explore
        )

    # -- checkpoints -------------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        return {
            "algorithm": self.name,
            "multi_agent": True,
            "counters": {
                "iteration": self.iteration,
                "timesteps": self.timesteps,
                "timesteps_trained": self.timesteps_trained,
                "episodes_total": self.episodes_total,
                "time_total": self.time_total,
                "runner_restarts": self.group.restarts,
                "games_total": self.games_total,
            },
            "episodes": {"returns": list(self.returns), "lengths": list(self.lengths)},
            "policy_episodes": {
                pid: {"window": list(w), "total": self.policy_episodes[pid], "steps": self.policy_steps[pid]}
                for pid, w in self.policy_returns.items()
            },
            "policies": {pid: sub.get_state() for pid, sub in self.subs.items()},
            "self_play": (
                {"pool": self.pool.state(), "outcomes": list(self.outcomes)}
                if self.pool is not None
                else None
            ),
            "rng": rng_state(self.np_rng),
            **({"league": self.league} if self.league is not None else {}),
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        if not state.get("multi_agent"):
            raise ValueError("checkpoint is from a single-agent run, not a multi-agent one")
        if state.get("algorithm") != self.name:
            raise ValueError(f"checkpoint is for algorithm {state.get('algorithm')!r}, not {self.name!r}")
        if state.get("league") is not None:
            self._restore_league(state["league"])
        missing = set(self.subs) - set(state["policies"])
        if missing:
            raise ValueError(f"checkpoint lacks policies {sorted(missing)}")
        self.restore_progress(state)
        c = state["counters"]
        self.group.restarts = int(c["runner_restarts"])
        self.games_total = int(c["games_total"])
        for pid, pe in state["policy_episodes"].items():
            if pid in self.policy_returns:
                self.policy_returns[pid].clear()
                self.policy_returns[pid].extend(tuple(x) for x in pe["window"])
                self.policy_episodes[pid] = int(pe["total"])
                self.policy_steps[pid] = int(pe["steps"])
        for pid, sub in self.subs.items():
            sub.set_state(state["policies"][pid])  # also hands the weights to the hub
        sp_state = state.get("self_play")
        if self.pool is not None and sp_state is not None:
            self.pool.set_state(sp_state["pool"])
            self.outcomes.clear()
            self.outcomes.extend(sp_state["outcomes"])
            self.hub.set_pool(self.pool.as_list())
        set_rng_state(self.np_rng, state["rng"])
        self.hub.push()

    def interrupt(self) -> None:
        """A stop signal arrived: the multi-agent runners sample in bounded time, so nothing to cut short."""

    def stop(self) -> None:
        self.group.stop()
        if self.agent_writer is not None:
            self.agent_writer.close()


def check_supported(job: RLTrainingJob) -> None:
    """What a multi-agent job cannot combine (kuberl.spec.combinations; validation already refused it, but
    a spec built with model_construct skips validators)."""
    problems = combination_problems(job.spec)
    if problems:
        raise SpecError([(f"spec.{field}", reason) for field, reason in problems])
