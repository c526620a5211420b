"""Which features each algorithm supports: one `Capabilities` per algorithm config class.

This is the only place that says what an algorithm can be combined with. Validation
(kuberl.spec.combinations, AlgorithmConfigBase, kuberl.spec.common.learner_problems) refuses a job by
reading these flags, and the trainer checks the env's action space against `action_spaces` when it
builds the algorithm. `kuberl.spec.algorithms.capabilities()` lists them all (docs/spec.md shows the table).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

# The Gymnasium action spaces an algorithm can act in ("discrete": Discrete, "box": Box of floats,
# "multi_discrete": MultiDiscrete, "multi_binary": MultiBinary, "tuple"/"dict": Tuple/Dict whose
# components are any of these; kuberl.core.action_spaces maps a space to its kind).
ActionSpaceKind = Literal["discrete", "box", "multi_discrete", "multi_binary", "tuple", "dict"]
# How an algorithm honours an `action_mask` in a multi-agent observation: "model" (the trainer wraps its
# actor-critic network with kuberl.core.multi_agent.masking), "own" (its own network and runner policy
# read the mask), "none" (illegal actions are possible; a warning says so).
ActionMasking = Literal["model", "own", "none"]


@dataclass(frozen=True)
class Capabilities:
    """The features an algorithm supports (field docs are in FEATURES)."""

    action_spaces: frozenset[ActionSpaceKind]
    external: bool = False
    multi_agent: bool = False
    action_masks: ActionMasking = "none"
    recurrent: bool = False
    observation_filter: bool = True
    reward_normalization: bool = False
    offline_input: bool = False
    offline_output: bool = True
    multi_learner: bool = False
    joint_agents: bool = False


# What each flag means, in the words of the spec field it governs.
FEATURES: dict[str, str] = {
    "action_spaces": (
        "the env's action space kinds it trains (Discrete: discrete, Box: box, MultiDiscrete: multi_discrete, "
        "MultiBinary: multi_binary, Tuple/Dict of those: tuple/dict)"
    ),
    "external": "spec.external: trains from the policy server's experience (external simulators)",
    "multi_agent": "spec.multiAgent: one instance per trained policy, fed by the multi-agent runners",
    "action_masks": "how a multi-agent action_mask is applied: model, own or none",
    "recurrent": "config.model.useLstm: recurrent (LSTM) policies",
    "observation_filter": "config.observationFilter: MeanStdFilter",
    "reward_normalization": (
        "config.normalizeRewards: rewards scaled by the running std of the discounted return (on-policy "
        "learners fed by the env runners)"
    ),
    "offline_input": "spec.input: trains from recorded experience only (and requires it)",
    "offline_output": "spec.output: records the transitions it samples",
    "multi_learner": "resources.learners > 1: data-parallel DDP learners",
    "joint_agents": (
        "spec.env: every agent of a cooperative PettingZoo ParallelEnv, trained by one joint learner "
        "(no spec.multiAgent)"
    ),
}
assert set(FEATURES) == {f.name for f in fields(Capabilities)}

DISCRETE: frozenset[ActionSpaceKind] = frozenset({"discrete"})
BOX: frozenset[ActionSpaceKind] = frozenset({"box"})
ANY_SPACE: frozenset[ActionSpaceKind] = frozenset({"discrete", "box"})
# The policy-gradient family samples from a product distribution over any of these
# (kuberl.core.distributions: MultiCategorical, Bernoulli, Composite).
ALL_SPACES: frozenset[ActionSpaceKind] = frozenset(
    {"discrete", "box", "multi_discrete", "multi_binary", "tuple", "dict"}
)
# ES and ARS act with the deterministic action of the same distributions, and their perturbation
# runners step the env through kuberl.core.action_spaces.to_env (Box parts clipped, Tuple/Dict
# structured), as every other runner does.
EVOLUTION_SPACES = ALL_SPACES
