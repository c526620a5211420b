"""The base of the offline algorithms: train from `spec.input` instead of sampling.

The env is still built (one local runner, no Ray actors) for its spaces and for `evaluate()`, which
plays the trained policy online. `timesteps` — and so `stop.timesteps` and the result's
`num_env_steps_*` keys — count the recorded transitions trained on. At every evaluation the result
also carries `off_policy_estimation` (kuberl.core.offline.ope) of the current policy on logged
episodes, when the data holds the behaviour policy's `action_logp`.
"""

from __future__ import annotations

import time
from typing import ClassVar, TypeVar

import numpy as np

from kuberl.algorithms.base import Algorithm, StepOutcome
from kuberl.core.offline import ope
from kuberl.core.offline.reader import OfflineData
from kuberl.core.offline.schema import C
from kuberl.core.runner_group import EnvRunnerGroup
from kuberl.results import TrainResult
from kuberl.spec.algorithms.offline import OfflineConfigBase
from kuberl.spec.errors import SpecError
from kuberl.spec.offline import InputSpec

OfflineConfigT = TypeVar("OfflineConfigT", bound=OfflineConfigBase)


class OfflineAlgorithm(Algorithm[OfflineConfigT]):
    """Subclasses set `data_columns`, build their learner in `setup_learner()` and implement
    `update(batch)`; those with action probabilities implement `target_logp` for OPE."""

    data_columns: ClassVar[tuple[str, ...]] = (C.OBS, C.ACTIONS)
    reads_input = True
    samples_env = False

    def make_runner_group(self) -> EnvRunnerGroup:
        return EnvRunnerGroup(self.runner_config, num_runners=0)

    def sync_weights(self) -> None:
        """Nothing to do: the local runner is never sampled (evaluate() and compute_actions() use the
        learner's networks), so it need not hold the weights, nor share the learner's network shape."""

    def returns_gamma(self) -> float | None:
        """γ for a `returns_to_go` column (MARWIL), or None when the algorithm needs none."""
        return None

    def setup_learner(self) -> None:
        raise NotImplementedError

    def update(self, batch: dict[str, np.ndarray]) -> dict[str, float]:
        raise NotImplementedError

    def target_logp(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray | None:
        """log π(a|s) of the current policy for logged (s, a), or None (no OPE)."""
        return None

    @property
    def input_spec(self) -> InputSpec:
        if self.spec.input_ is None:
            raise SpecError(
                [("spec.input", f"{self.name} trains from recorded experience: set spec.input.uris")]
            )
        return self.spec.input_

    def setup(self) -> None:
        self.data = OfflineData(
            self.input_spec,
            columns=self.data_columns,
            returns_to_go_gamma=self.returns_gamma(),
            seed=self.spec.seed,
        )
        self._ope_episodes: list[dict[str, np.ndarray]] | None = None
        self.setup_learner()

    def training_step(self) -> StepOutcome:
        cfg = self.config
        load = learn = 0.0
        sums: dict[str, float] = {}
        for _ in range(cfg.updates_per_iteration):
            t0 = time.perf_counter()
            batch = self.data.next_batch(cfg.train_batch_size)
            t1 = time.perf_counter()
            for k, v in self.update(batch).items():
                sums[k] = sums.get(k, 0.0) + v
            load += t1 - t0
            learn += time.perf_counter() - t1
        rows = cfg.train_batch_size * cfg.updates_per_iteration
        self.timesteps += rows  # documented: offline timesteps are rows trained on
        stats = {k: v / cfg.updates_per_iteration for k, v in sums.items()}
        stats["dataset_epochs"] = float(self.data.epochs)
        return StepOutcome(
            rollouts=[],
            env_steps_trained=rows,
            learner_stats=stats,
            timers={"load": load, "learn": learn},
        )

    def stop(self) -> None:
        if hasattr(self, "data"):
            self.data.close()
        super().stop()

    def train(self) -> TrainResult:
        result = super().train()
        if "evaluation" in result:
            estimate = self.off_policy_estimate()
            if estimate is not None:
                result["off_policy_estimation"] = estimate
        return result

    def off_policy_estimate(self, episodes: int | None = None) -> dict[str, float] | None:
        """IS and WIS of the current policy on up to `opeEpisodes` logged episodes (read once), or None
        when turned off, unsupported by the policy, or the data holds no behaviour log-probabilities."""
        count = self.input_spec.ope_episodes if episodes is None else episodes
        if count <= 0:
            return None
        if self._ope_episodes is None:
            cols = (C.OBS, C.ACTIONS, C.REWARDS, C.ACTION_LOGP)
            self._ope_episodes = [
                e for e in self.data.episodes(count, cols) if np.all(np.isfinite(e[C.ACTION_LOGP]))
            ]
        logged = self._ope_episodes
        if not logged:
            return None
        # One forward pass over every step of every episode, then split back per episode.
        obs = np.concatenate([e[C.OBS] for e in logged])
        actions = np.concatenate([e[C.ACTIONS] for e in logged])
        target = self.target_logp(obs, actions)
        if target is None:
            return None
        splits = np.cumsum([len(e[C.REWARDS]) for e in logged])[:-1]
        episodes_ = [
            ope.Episode(rewards=e[C.REWARDS], behaviour_logp=e[C.ACTION_LOGP], target_logp=t)
            for e, t in zip(logged, np.split(target, splits), strict=True)
        ]
        return ope.estimate(episodes_, self.config.gamma)
