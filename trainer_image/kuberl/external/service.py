"""What the HTTP policy API does, without HTTP: validate, act with the current policy, book-keep.

One lock guards the episode book and the inference policy: the server's event loop, the trainer's
`sample()` and weight syncs all take it for a few milliseconds at a time. The inference policy is a
CPU copy of the learner's module, so a learner update (on CPU or GPU, in the trainer thread) never
races with a forward pass serving a client.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from kuberl.core.models import dist_input_dim, flatten_obs, load_numpy_weights
from kuberl.core.policy import ActorCriticPolicy
from kuberl.core.preprocess import batch_of_one
from kuberl.core.sample_batch import Columns
from kuberl.external.episodes import EpisodeBook, EpisodeError, TakenBatch
from kuberl.external.spaces import (
    InvalidValueError,
    action_to_json,
    space_to_json,
    validate_action,
    validate_observation,
)
from kuberl.spec.algorithms import ModelConfig


class SampleInterrupted(InterruptedError):  # noqa: N818 (a state, as InterruptedError)
    """The trainer's stop signal ended a wait for experience (an InterruptedError: no fault to report)."""


@dataclass
class LoggedAction:
    """A validated client-chosen action, ready to enter the book."""

    obs: np.ndarray
    action: np.ndarray
    logp: float | None
    dist_inputs: np.ndarray | None


class PolicyService:
    def __init__(
        self,
        obs_space: gym.Space[Any],
        action_space: gym.Space[Any],
        model: ModelConfig,
        *,
        max_open_episodes: int = 1024,
        idle_timeout: float = 60.0,
        seed: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.obs_space = obs_space
        self.action_space = action_space
        self.model = model
        self.policy = ActorCriticPolicy(obs_space, action_space, model, {})
        self.dist_dim = dist_input_dim(action_space)
        self.book = EpisodeBook(max_open_episodes=max_open_episodes)
        self.idle_timeout = idle_timeout
        self.clock = clock
        self.cond = threading.Condition()
        self.version = 0
        self.weights: dict[str, np.ndarray] = {
            k: v.detach().numpy().copy() for k, v in self.policy.module.state_dict().items()
        }
        self.gen = torch.Generator()
        self.gen.manual_seed(seed if seed is not None else 0)
        self.requests_total = 0
        # Set by interrupt() from the trainer's signal handler: a plain flag (no lock can be taken safely
        # there), read by wait_and_take at every poll.
        self.interrupted = False

    # -- weights -----------------------------------------------------------------------------------
    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        with self.cond:
            load_numpy_weights(self.policy.module, weights)
            self.weights = {k: np.asarray(v) for k, v in weights.items()}
            self.version += 1

    def policy_document(self) -> dict[str, Any]:
        """What a local-mode client needs to build the same policy and act with it."""
        with self.cond:
            weights = {
                k: {"shape": list(v.shape), "data": v.ravel().tolist()} for k, v in self.weights.items()
            }
            version = self.version
        return {
            "version": version,
            "observation_space": space_to_json(self.obs_space),
            "action_space": space_to_json(self.action_space),
            "model": self.model.model_dump(mode="json"),
            "weights": weights,
        }

    # -- validation (outside the lock) -------------------------------------------------------------
    def flat_obs(self, value: Any) -> np.ndarray:
        obs = validate_observation(self.obs_space, value)
        return flatten_obs(self.obs_space, batch_of_one(self.obs_space, obs))[0].astype(np.float32)

    def logged_action(
        self, observation: Any, action: Any, logp: float | None, dist_inputs: Sequence[float] | None
    ) -> LoggedAction:
        obs = self.flat_obs(observation)
        act = validate_action(self.action_space, action)
        dist = None
        if dist_inputs is not None:
            wide = np.asarray(dist_inputs, dtype=np.float64)
            if wide.shape != (self.dist_dim,) or not np.all(np.abs(wide) <= np.finfo(np.float32).max):
                raise InvalidValueError(f"action_dist_inputs must be {self.dist_dim} finite float32 numbers")
            dist = wide.astype(np.float32)
        if (logp is None) != (dist is None):
            raise InvalidValueError(
                "action_logp and action_dist_inputs come together (local mode) or not at all"
            )
        return LoggedAction(obs, act, logp, dist)

    # -- the verbs (each takes the lock) -----------------------------------------------------------
    def start_episode(self, episode_id: str | None, training_enabled: bool) -> str:
        with self.cond:
            self.requests_total += 1
            return self.book.start(episode_id, training_enabled=training_enabled, now=self.clock())

    def get_actions(self, requests: Sequence[tuple[str, np.ndarray, bool]]) -> list[Any]:
        """Actions for many (episode id, flat obs, explore) requests in one forward pass. Returns, per
        request, the JSON action or the EpisodeError that request earned."""
        with self.cond:
            self.requests_total += len(requests)
            now = self.clock()
            results: list[Any] = [None] * len(requests)
            live = []
            for i, (eid, _, _) in enumerate(requests):
                if eid in self.book.open:
                    live.append(i)
                else:
                    results[i] = EpisodeError(
                        404, f"no open episode {eid!r} (never started, ended, or idle too long)"
                    )
            if not live:
                return results
            obs = torch.from_numpy(np.stack([requests[i][1] for i in live]))
            with torch.inference_mode():
                out = self.policy.act(obs, explore=True, generator=self.gen)
                if not all(requests[i][2] for i in live):
                    greedy = self.policy.dist.deterministic(out[Columns.ACTION_DIST_INPUTS])
                    mask = torch.tensor([requests[i][2] for i in live])
                    shape = (-1,) + (1,) * (greedy.dim() - 1)
                    actions = torch.where(mask.view(shape), out[Columns.ACTIONS], greedy)
                    out[Columns.ACTIONS] = actions
                    out[Columns.ACTION_LOGP] = self.policy.dist.logp(out[Columns.ACTION_DIST_INPUTS], actions)
            acts = out[Columns.ACTIONS].numpy()
            logp = out[Columns.ACTION_LOGP].numpy()
            dist = out[Columns.ACTION_DIST_INPUTS].numpy()
            for j, i in enumerate(live):
                eid, o, _ = requests[i]
                try:
                    self.book.act(
                        eid, obs=o, action=acts[j], logp=float(logp[j]), dist_inputs=dist[j], now=now
                    )
                    results[i] = action_to_json(self.action_space, acts[j])
                except EpisodeError as exc:  # defensive: the book refused the step
                    results[i] = exc
            self.cond.notify_all()
            return results

    def log_action(self, episode_id: str, logged: LoggedAction) -> None:
        with self.cond:
            self.requests_total += 1
            self._log_action(episode_id, logged)
            self.cond.notify_all()

    def _log_action(self, episode_id: str, a: LoggedAction) -> None:
        self.book.act(
            episode_id, obs=a.obs, action=a.action, logp=a.logp, dist_inputs=a.dist_inputs, now=self.clock()
        )

    def log_returns(self, episode_id: str, reward: float) -> None:
        with self.cond:
            self.requests_total += 1
            self.book.log_returns(episode_id, reward, now=self.clock())

    def end_episode(self, episode_id: str, obs: np.ndarray, truncated: bool) -> tuple[float, int]:
        with self.cond:
            self.requests_total += 1
            result = self.book.end(episode_id, obs=obs, truncated=truncated, now=self.clock())
            self.cond.notify_all()
            return result

    def apply_events(self, events: Sequence[tuple[str, str, Any]]) -> int:
        """Local-mode experience: already-validated (kind, episode id, payload) events applied in order.
        An event that does not fit its episode's state stops the batch: EpisodeError names its index."""
        with self.cond:
            self.requests_total += 1
            now = self.clock()
            try:
                for i, (kind, eid, payload) in enumerate(events):
                    try:
                        if kind == "start":
                            self.book.start(eid, training_enabled=bool(payload), now=now)
                        elif kind == "action":
                            self._log_action(eid, payload)
                        elif kind == "returns":
                            self.book.log_returns(eid, float(payload), now=now)
                        else:
                            obs, truncated = payload
                            self.book.end(eid, obs=obs, truncated=truncated, now=now)
                    except EpisodeError as exc:
                        raise EpisodeError(
                            exc.status, f"events[{i}] ({kind}): {exc}; the {i} events before it were applied"
                        ) from None
            finally:
                self.cond.notify_all()
            return len(events)

    # -- the trainer's side ------------------------------------------------------------------------
    def interrupt(self) -> None:
        """Make a waiting (or the next) wait_and_take raise SampleInterrupted within one poll."""
        self.interrupted = True

    def wait_and_take(self, min_steps: int, *, poll: float = 0.25) -> TakenBatch:
        """Block until `min_steps` trainable steps are complete (closing abandoned episodes meanwhile).
        Raises SampleInterrupted after interrupt(): a stop signal must not wait for the next client."""
        with self.cond:
            while True:
                if self.interrupted:
                    raise SampleInterrupted("stopped while waiting for clients' experience")
                self.book.expire(now=self.clock(), idle_timeout=self.idle_timeout)
                if self.book.ready_steps >= min_steps:
                    return self.book.take_batch()
                self.cond.wait(timeout=poll)

    def evaluate_batch(
        self, obs: np.ndarray, next_obs: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(dist inputs at obs, V(obs), V(next_obs)) with the current weights, in one forward pass."""
        with self.cond, torch.inference_mode():
            dist_in, values = self.policy.module(torch.from_numpy(np.concatenate([obs, next_obs])))
        n = len(obs)
        return dist_in[:n].numpy(), values[:n].numpy(), values[n:].numpy()

    def logp(self, dist_inputs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.policy.dist.logp(torch.from_numpy(dist_inputs), torch.from_numpy(actions)).numpy()
