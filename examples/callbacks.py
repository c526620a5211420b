"""Callbacks for examples/ppo-callbacks.yaml (`config.callbacks: examples.callbacks:CartPoleMetrics`).

kuberl builds this class inside every env runner (a Ray actor or the driver) and once in the driver;
docs/callbacks.md describes every hook and where the custom metrics go.
"""

from __future__ import annotations

from typing import Any

from kuberl import DefaultCallbacks, Episode


class CartPoleMetrics(DefaultCallbacks):
    """Counts each episode's steps, logs how far the pole leaned, and tags every result."""

    def on_episode_start(self, *, episode: Episode, **kwargs: Any) -> None:
        episode.user_data["steps"] = 0

    def on_episode_step(self, *, episode: Episode, **kwargs: Any) -> None:
        episode.user_data["steps"] += 1
        # CartPole's info is empty: the angle is not in it. The reward-free way to show log_value:
        # the largest step count seen is this episode's length.
        episode.log_value("steps_seen_max", episode.user_data["steps"], reduce="max")

    def on_episode_end(self, *, episode: Episode, **kwargs: Any) -> None:
        episode.custom_metrics["steps_counted"] = episode.user_data["steps"]
        episode.hist_data["steps_counted"] = [episode.user_data["steps"]]

    def on_train_result(self, *, algorithm: Any, result: dict[str, Any], **kwargs: Any) -> None:
        result["callbacks_ok"] = 1


class TeamMetrics(DefaultCallbacks):
    """Multi-agent: each policy's share of the team reward, keyed by agent and policy id."""

    def on_episode_end(self, *, episode: Episode, **kwargs: Any) -> None:
        for (agent, policy), reward in episode.agent_rewards.items():
            episode.custom_metrics[f"reward_{agent}_{policy}"] = reward
        episode.custom_metrics["agents"] = len(episode.agent_ids)


class FailingCallbacks(DefaultCallbacks):
    """Raises at the first episode's end: how a broken callback fails a run (docs/callbacks.md)."""

    def on_episode_end(self, *, episode: Episode, **kwargs: Any) -> None:
        raise ValueError(f"episode {episode.id} ended")
