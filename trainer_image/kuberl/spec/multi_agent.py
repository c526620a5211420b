"""`spec.multiAgent`: named policies, the rule that maps agents to them, and self-play.

A multi-agent job names a PettingZoo environment in `env` (a parallel or AEC env) and lists its
policies here. Each trained policy is learned by its own instance of the job's `algorithm`; frozen
policies act but never learn. Pure pydantic: the operator imports this module too.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field, field_validator, model_validator

from kuberl.spec.base import WireModel

DEFAULT_POLICY = "default_policy"

_POLICY_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,62}$")
_IMPORT_PATH = r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$"


class PolicySpec(WireModel):
    """One policy: trained by the job's algorithm, or frozen (acting with fixed weights)."""

    trainable: bool = Field(
        True, description="Train this policy; false freezes it (it acts but never learns)."
    )
    random: bool = Field(
        False,
        description=(
            "A uniformly random policy over the legal actions (honours an `action_mask` observation key). "
            "Implies trainable: false."
        ),
    )
    checkpoint: str | None = Field(
        None,
        description=(
            "Start from the weights in this checkpoint (URI or path) of the same algorithm: a single-agent "
            "checkpoint, or a multi-agent one with checkpointPolicy naming the policy in it."
        ),
    )
    checkpoint_policy: str | None = Field(
        None, description="The policy to take from a multi-agent checkpoint (default: this policy's name)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> PolicySpec:
        if self.random and self.trainable:
            # A random policy has nothing to learn; say so rather than silently not training it.
            raise ValueError("a random policy cannot be trainable; set trainable: false")
        if self.random and self.checkpoint:
            raise ValueError("a random policy has no weights to load; drop checkpoint or random")
        return self


class MappingRule(WireModel):
    """Agents whose id matches `agentPattern` act with `policy`. Rules are tried in order."""

    agent_pattern: str = Field(
        ...,
        min_length=1,
        description="A glob on the agent id (`player_*`, `team_[ab]_?`), or a regular expression as `re:<regex>`.",
    )
    policy: str = Field(..., description="The policy (a key of `policies`) for matching agents.")

    @field_validator("agent_pattern")
    @classmethod
    def _pattern(cls, v: str) -> str:
        if v.startswith("re:"):
            try:
                re.compile(v[3:])
            except re.error as exc:
                raise ValueError(f"{v[3:]!r} is not a valid regular expression: {exc}") from None
        return v


class SelfPlaySpec(WireModel):
    """Self-play: the learning policy plays against snapshots of itself kept in an opponent pool."""

    policy: str = Field(..., description="The learning policy (trainable) whose snapshots fill the pool.")
    opponent_policy: str = Field(
        ...,
        description=(
            "The frozen policy that opponents act as. Each episode one agent (a random seat) acts with "
            "`policy`, every other agent with this policy's weights drawn from the pool."
        ),
    )
    snapshot_every_iterations: Annotated[int, Field(ge=1)] = Field(
        5, description="Copy the learning policy's weights into the pool every N training iterations."
    )
    pool_size: Annotated[int, Field(ge=1, le=100)] = Field(
        10, description="Snapshots kept in the pool; the oldest leaves first (FIFO)."
    )
    latest_probability: Annotated[float, Field(ge=0.0, le=1.0)] = Field(
        0.5,
        description=(
            "Probability that an episode's opponent plays the latest weights of the learning policy instead "
            "of a snapshot drawn uniformly from the pool."
        ),
    )
    random_opponent_probability: Annotated[float, Field(ge=0.0, le=1.0)] = Field(
        0.0,
        description=(
            "Probability that an episode's opponents play uniformly random legal moves instead (drawn before "
            "latestProbability): keeps the learner punishing the mistakes its own snapshots stop making."
        ),
    )
    evaluation_games: Annotated[int, Field(ge=0)] = Field(
        0,
        description=(
            "Every snapshot, also play this many games against a uniformly random (legal-move) opponent and "
            "report the win rate (0: never)."
        ),
    )


class MultiAgentSpec(WireModel):
    """Multi-agent training on a PettingZoo environment (parallel API; AEC envs are stepped turn by turn).
    `env` is then a PettingZoo registry id (classic/tictactoe-v3) or `module:attr` (a PettingZoo env module
    or a factory returning a ParallelEnv/AECEnv)."""

    policies: dict[str, PolicySpec] = Field(
        default_factory=lambda: {DEFAULT_POLICY: PolicySpec()},
        description="Named policies (default: one shared, trained `default_policy`).",
    )
    policy_mapping: list[MappingRule] = Field(
        default_factory=list,
        description=(
            "Ordered agent → policy rules; the first match wins. Empty with one policy: every agent shares it."
        ),
    )
    policy_mapping_function: str | None = Field(
        None,
        pattern=_IMPORT_PATH,
        description=(
            "`module:function` called as function(agent_id, episode) → policy name, once per agent and "
            "episode (`episode.id`, `episode.env_index`, `episode.worker_index`). Instead of policyMapping."
        ),
    )
    policies_to_train: list[str] | None = Field(
        None,
        description="Policies to train (default: every policy with trainable: true). Others stay frozen.",
    )
    self_play: SelfPlaySpec | None = Field(
        None, description="Self-play against an opponent pool of the learning policy's snapshots."
    )

    @field_validator("policies")
    @classmethod
    def _names(cls, v: dict[str, PolicySpec]) -> dict[str, PolicySpec]:
        if not v:
            raise ValueError("at least one policy is needed")
        for name in v:
            if not _POLICY_NAME.match(name):
                raise ValueError(
                    f"policy name {name!r} must start with a letter or '_' and hold only letters, digits, '_' "
                    "and '-' (it becomes a Prometheus label value)"
                )
        return v

    @model_validator(mode="after")
    def _references(self) -> MultiAgentSpec:
        names = set(self.policies)
        known = ", ".join(sorted(names))
        for i, rule in enumerate(self.policy_mapping):
            if rule.policy not in names:
                raise ValueError(
                    f"policyMapping[{i}].policy: {rule.policy!r} is not a policy (known: {known})"
                )
        if self.policy_mapping and self.policy_mapping_function:
            raise ValueError("set policyMapping or policyMappingFunction, not both")
        for name in self.policies_to_train or []:
            if name not in names:
                raise ValueError(f"policiesToTrain: {name!r} is not a policy (known: {known})")
            if not self.policies[name].trainable:
                raise ValueError(f"policiesToTrain: {name!r} has trainable: false")
        if not self.trained_policies():
            raise ValueError("no policy is trained; mark at least one policy trainable")
        sp = self.self_play
        if sp is not None:
            if sp.policy not in names:
                raise ValueError(f"selfPlay.policy: {sp.policy!r} is not a policy (known: {known})")
            if sp.opponent_policy not in names:
                raise ValueError(
                    f"selfPlay.opponentPolicy: {sp.opponent_policy!r} is not a policy (known: {known})"
                )
            if sp.policy not in self.trained_policies():
                raise ValueError(f"selfPlay.policy: {sp.policy!r} must be a trained policy")
            opp = self.policies[sp.opponent_policy]
            if opp.trainable or opp.random or opp.checkpoint:
                raise ValueError(
                    f"selfPlay.opponentPolicy: {sp.opponent_policy!r} must be a plain frozen policy "
                    "(trainable: false, no random, no checkpoint): its weights come from the pool"
                )
            if self.policy_mapping or self.policy_mapping_function:
                raise ValueError(
                    "selfPlay assigns seats itself; leave policyMapping and policyMappingFunction empty"
                )
        elif len(self.policies) > 1 and not (self.policy_mapping or self.policy_mapping_function):
            raise ValueError("several policies need policyMapping rules or a policyMappingFunction")
        return self

    def trained_policies(self) -> list[str]:
        """Names of the policies that learn, in the order they were declared."""
        if self.policies_to_train is not None:
            return [p for p in self.policies if p in self.policies_to_train]
        return [p for p, spec in self.policies.items() if spec.trainable]
