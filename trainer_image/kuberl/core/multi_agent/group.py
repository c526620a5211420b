"""A set of MultiAgentEnvRunners: in the driver (envRunners: 0) or as Ray actors, recreated when they die.

The recovery contract is RunnerActorGroup's (kuberl.core.runner_group): a dead actor is recreated with
its index and seed stream, given the last state, and asked again.
"""

from __future__ import annotations

from typing import Any

from kuberl.core.multi_agent.runner import MultiAgentEnvRunner, MultiAgentRunnerConfig, MultiAgentSample
from kuberl.core.runner_group import RunnerActorGroup


class MultiAgentRunnerGroup(RunnerActorGroup):
    runner_cls = MultiAgentEnvRunner
    kind = "multi-agent env runner"
    base: MultiAgentRunnerConfig
    local: MultiAgentEnvRunner | None

    @property
    def num_envs(self) -> int:
        return self.base.num_envs * max(len(self.actors), 1)

    def sync(self, state: dict[str, Any]) -> None:
        self._state = (state,)
        if self.local is not None:
            self.local.set_state(state)
            return
        ref = self._ray().put(state)
        self._wait_all(
            [a.set_state.remote(ref) for a in self.actors], lambda i: self.actors[i].set_state.remote(ref)
        )

    def reconfigure(self, config: MultiAgentRunnerConfig) -> None:
        """Every runner's policies and mapping (MultiAgentEnvRunner.reconfigure); a recreated runner
        starts from the new config."""
        self.base = config
        if self.local is not None:
            self.local.reconfigure(config)
            return
        ref = self._ray().put(config)
        self._wait_all(
            [a.reconfigure.remote(ref) for a in self.actors], lambda i: self.actors[i].reconfigure.remote(ref)
        )

    def sample(self, num_steps: int) -> list[MultiAgentSample]:
        if self.local is not None:
            return [self.local.sample(num_steps)]
        futures = [a.sample.remote(num_steps) for a in self.actors]
        results: list[MultiAgentSample] = self._wait_all(
            futures, lambda i: self.actors[i].sample.remote(num_steps)
        )
        return results
