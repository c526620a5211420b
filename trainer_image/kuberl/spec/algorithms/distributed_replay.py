"""The fields every Ape-X algorithm (APEX, APEX_DDPG) adds to its learner's config: how the asynchronous
driver of kuberl.algorithms.families.distributed_replay talks to its env runners. Each algorithm's config
mixes them in next to its learner's base (QLearningConfigBase, DDPGConfig), so the fields, their bounds
and their descriptions are written once."""

from __future__ import annotations

from pydantic import Field

from kuberl.spec.base import WireModel


class DistributedReplayFields(WireModel):
    """Broadcasts, in-flight requests and iteration length of the asynchronous distributed-replay driver.
    Not an algorithm config by itself (no `algorithm` discriminator): a mixin."""

    broadcast_interval: int = Field(
        1,
        ge=1,
        description=(
            "Learner updates between weight broadcasts; each runner takes the newest weights with its "
            "next request, without blocking (the paper: actors fetch every 400 env steps)."
        ),
    )
    max_requests_in_flight_per_env_runner: int = Field(
        2,
        ge=1,
        description="Sample requests kept queued at each env runner, so it samples while the learner trains.",
    )
    min_sample_timesteps_per_iteration: int = Field(
        1000,
        ge=1,
        description="An iteration (one result row) lasts until at least this many env steps arrived.",
    )
