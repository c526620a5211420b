"""Episode bookkeeping for the policy server: the PolicyClient verbs as a pure state machine.

A step is the action taken at an observation and the reward logged until the next observation arrives
(the next `get_action`/`log_action`, or `end_episode`). Completed steps wait here until the trainer
takes a batch. `take_batch()` lays the fragments of many episodes end to end in one lane: an episode
still running at that moment is cut after its last completed step, which is marked truncated so the
return estimators stop there and bootstrap with V(next observation) — the same as an env runner's
rollout boundary. An episode whose client vanished (idle past the timeout) keeps every step it sent:
its pending step is closed as a truncation with no next observation (bootstrapped from V(obs)).

No torch, no HTTP, no clock: the caller passes `now`, so every rule is unit-testable.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import numpy as np

from kuberl.core.sample_batch import Columns

#: The largest reward a step or an episode may sum to: rewards are stored as float32.
F32_MAX = float(np.finfo(np.float32).max)


class EpisodeError(Exception):
    """A request that does not fit the episode's state; `status` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Step:
    obs: np.ndarray  # flat float32
    action: np.ndarray
    # The behaviour policy's log-prob and distribution inputs; None for an action the client chose
    # itself (log_action without them): the trainer fills them in from its current policy.
    logp: float | None
    dist_inputs: np.ndarray | None
    reward: float = 0.0
    next_obs: np.ndarray | None = None  # None only for the last step of an abandoned episode
    terminated: bool = False
    truncated: bool = False


@dataclass
class Episode:
    id: str
    training_enabled: bool
    last_seen: float
    completed: list[Step] = field(default_factory=list)
    pending: Step | None = None
    episode_return: float = 0.0
    length: int = 0


@dataclass
class Fragment:
    """Consecutive steps of one episode; `steps[-1]` ends the episode or is cut (truncated there).
    `cut`: the episode goes on in a later batch (spec.output records its fragments as one episode)."""

    steps: list[Step]
    episode_id: str = ""
    cut: bool = False


@dataclass
class TakenBatch:
    fragments: list[Fragment]
    episode_returns: list[float]
    episode_lengths: list[int]

    @property
    def num_steps(self) -> int:
        return sum(len(f.steps) for f in self.fragments)


class EpisodeBook:
    """Open episodes and the completed steps waiting to be trained on. Not thread-safe: the server
    serializes access with one lock."""

    def __init__(self, *, max_open_episodes: int = 1024) -> None:
        self.max_open_episodes = max_open_episodes
        self.open: dict[str, Episode] = {}
        self._closed: list[Fragment] = []
        self._returns: list[float] = []
        self._lengths: list[int] = []
        self.ready_steps = 0  # completed trainable steps not yet taken
        self.abandoned_total = 0

    # -- the client verbs --------------------------------------------------------------------------
    def start(self, episode_id: str | None, *, training_enabled: bool, now: float) -> str:
        if episode_id is None:
            episode_id = uuid.uuid4().hex
        elif episode_id in self.open:
            raise EpisodeError(409, f"episode {episode_id!r} is already open")
        if len(self.open) >= self.max_open_episodes:
            raise EpisodeError(
                429, f"{self.max_open_episodes} episodes are open (external.maxOpenEpisodes); end some first"
            )
        self.open[episode_id] = Episode(episode_id, training_enabled, now)
        return episode_id

    def act(
        self,
        episode_id: str,
        *,
        obs: np.ndarray,
        action: np.ndarray,
        logp: float | None,
        dist_inputs: np.ndarray | None,
        now: float,
    ) -> None:
        """An action taken at `obs` (by the server's policy, or logged by the client)."""
        ep = self._get(episode_id, now)
        self._complete_pending(ep, next_obs=obs)
        ep.pending = Step(obs=obs, action=action, logp=logp, dist_inputs=dist_inputs)
        ep.length += 1

    def log_returns(self, episode_id: str, reward: float, *, now: float) -> None:
        """Reward since the last action (several calls add up). A reward before the first action counts
        towards the episode's return only (no step can carry it)."""
        ep = self._get(episode_id, now)
        step = (ep.pending.reward if ep.pending is not None else 0.0) + reward
        if abs(step) > F32_MAX or abs(ep.episode_return + reward) > F32_MAX:
            # Two finite rewards can add up to float32 infinity, which would make every weight NaN (M1).
            raise EpisodeError(422, f"episode {episode_id!r}: the rewards add up beyond the float32 range")
        ep.episode_return += reward
        if ep.pending is not None:
            ep.pending.reward = step

    def end(self, episode_id: str, *, obs: np.ndarray, truncated: bool, now: float) -> tuple[float, int]:
        """The episode ended at `obs`: terminated (the future is worth 0) or truncated (time limit:
        bootstrapped from V(obs)). Returns (episode return, length)."""
        ep = self._get(episode_id, now)
        if ep.pending is not None:
            ep.pending.terminated = not truncated
            ep.pending.truncated = truncated
        self._complete_pending(ep, next_obs=obs)
        self._close(ep)
        if ep.training_enabled:
            self._returns.append(ep.episode_return)
            self._lengths.append(ep.length)
        return ep.episode_return, ep.length

    # -- maintenance -------------------------------------------------------------------------------
    def expire(self, *, now: float, idle_timeout: float) -> list[str]:
        """Close episodes idle for longer than `idle_timeout`, keeping every step they sent."""
        gone = [e for e in self.open.values() if now - e.last_seen > idle_timeout]
        for ep in gone:
            if ep.pending is not None:
                ep.pending.truncated = True
            self._complete_pending(ep, next_obs=None)
            self._close(ep)
            self.abandoned_total += 1
        return [e.id for e in gone]

    def take_batch(self) -> TakenBatch:
        """Every completed trainable step, as fragments; running episodes are cut (truncated) here."""
        fragments = self._closed
        self._closed = []
        for ep in self.open.values():
            if ep.completed:
                cut = ep.completed
                cut[-1].truncated = True
                fragments.append(Fragment(cut, ep.id, cut=True))
                ep.completed = []
        taken = TakenBatch(fragments, self._returns, self._lengths)
        self._returns, self._lengths = [], []
        self.ready_steps = 0
        return taken

    # -- internals ---------------------------------------------------------------------------------
    def _get(self, episode_id: str, now: float) -> Episode:
        ep = self.open.get(episode_id)
        if ep is None:
            raise EpisodeError(
                404, f"no open episode {episode_id!r} (never started, ended, or idle too long)"
            )
        ep.last_seen = now
        return ep

    def _complete_pending(self, ep: Episode, *, next_obs: np.ndarray | None) -> None:
        step = ep.pending
        if step is None:
            return
        step.next_obs = next_obs
        ep.pending = None
        if ep.training_enabled:
            ep.completed.append(step)
            self.ready_steps += 1

    def _close(self, ep: Episode) -> None:
        del self.open[ep.id]
        if ep.completed:
            self._closed.append(Fragment(ep.completed, ep.id))
            ep.completed = []


def fragments_to_columns(fragments: list[Fragment], *, dist_dim: int) -> dict[str, np.ndarray]:
    """Fragments laid end to end as one lane: time-major [T, 1, ...] columns, plus NEXT_OBS (the
    observation each step led to; the step's own observation where it is unknown) and a boolean
    `needs_logp` column marking steps whose log-prob the trainer must compute."""
    steps = [s for f in fragments for s in f.steps]
    obs = np.stack([s.obs for s in steps]).astype(np.float32)
    next_obs = np.stack([s.next_obs if s.next_obs is not None else s.obs for s in steps]).astype(np.float32)
    needs = np.array([s.logp is None or s.dist_inputs is None for s in steps], dtype=bool)
    dist_in = np.stack(
        [s.dist_inputs if s.dist_inputs is not None else np.zeros(dist_dim, np.float32) for s in steps]
    ).astype(np.float32)
    return {
        Columns.OBS: obs[:, None],
        Columns.NEXT_OBS: next_obs[:, None],
        Columns.ACTIONS: np.stack([s.action for s in steps])[:, None],
        Columns.REWARDS: np.array([s.reward for s in steps], dtype=np.float32)[:, None],
        Columns.TERMINATEDS: np.array([s.terminated for s in steps], dtype=bool)[:, None],
        Columns.TRUNCATEDS: np.array([s.truncated for s in steps], dtype=bool)[:, None],
        Columns.ACTION_LOGP: np.array(
            [s.logp if s.logp is not None else 0.0 for s in steps], dtype=np.float32
        )[:, None],
        Columns.ACTION_DIST_INPUTS: dist_in[:, None],
        "needs_logp": needs[:, None],
    }
