"""Ape-X DQN's hyperparameters (the algorithm itself is kuberl.algorithms.apex).

Distributed prioritized experience replay (Horgan et al. 2018, https://arxiv.org/abs/1803.00933):
DQN's learner (double Q, dueling, n-step, prioritized replay) fed by many asynchronous env runners, each
exploring with its own fixed epsilon and sending its transitions with initial priorities.
RLlib's `APEX` names are used where they exist.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import AliasChoices, Field, model_validator

from kuberl.spec.algorithms.distributed_replay import DistributedReplayFields
from kuberl.spec.algorithms.q_learning import QLearningConfigBase, check_replay
from kuberl.spec.capabilities import DISCRETE, Capabilities


class APEXConfig(DistributedReplayFields, QLearningConfigBase):
    """Ape-X DQN: asynchronous env runners on a per-runner epsilon ladder, runner-side initial priorities,
    one learner training continuously on prioritized replay at a fixed replay ratio."""

    implementation: ClassVar[str] = "kuberl.algorithms.apex:APEX"
    capabilities: ClassVar[Capabilities] = Capabilities(DISCRETE, observation_filter=False)
    algorithm: Literal["APEX"] = Field(
        "APEX", exclude=True, description="Discriminator; set from spec.algorithm."
    )

    train_batch_size: int = Field(
        512, ge=1, description="Transitions sampled from the replay buffer per gradient step (RLlib's name)."
    )
    rollout_fragment_length: int = Field(
        50,
        ge=1,
        description=(
            "Vector steps in each fragment a runner sends; a fragment holds rolloutFragmentLength × "
            "envsPerRunner transitions, each with its initial priority."
        ),
    )
    buffer_size: int = Field(
        2_000_000,
        ge=1,
        validation_alias=AliasChoices("bufferSize", "buffer_size", "capacity", "replay_buffer_capacity"),
        description="Prioritized replay capacity in transitions; the oldest are overwritten first.",
    )
    prioritized_replay_beta: float = Field(
        0.4, ge=0.0, le=1.0, description="Importance-weight exponent β (fixed, as in the paper)."
    )
    worker_side_prioritization: bool = Field(
        True,
        description=(
            "Runners compute each new transition's initial priority (|n-step TD error| under their own copy "
            "of the network), as in the paper; false: new transitions enter at the largest priority so far."
        ),
    )
    n_step: int = Field(
        3, ge=1, description="n-step returns: bootstrap after n rewards (cut at episode and fragment ends)."
    )
    target_network_update_freq: int = Field(
        500,
        ge=1,
        description=(
            "Learner updates (gradient steps) between target-network updates; the paper copies every "
            "2,500 updates."
        ),
    )
    tau: float = Field(
        1.0,
        gt=0.0,
        le=1.0,
        description="Each target update sets target ← τ·online + (1−τ)·target; 1 is a hard copy.",
    )
    num_steps_sampled_before_learning_starts: int = Field(
        50_000,
        ge=0,
        validation_alias=AliasChoices(
            "numStepsSampledBeforeLearningStarts",
            "num_steps_sampled_before_learning_starts",
            "learning_starts",
            "learningStarts",
        ),
        description="Env steps collected into replay before the learner's first gradient step.",
    )
    epsilon_base: float = Field(
        0.4,
        gt=0.0,
        lt=1.0,
        description=(
            "ε of the paper's per-runner exploration ladder ε_i = ε^(1 + α·i/(N−1)) over the N = envRunners × "
            "envsPerRunner sub-envs (RLlib's PerWorkerEpsilonGreedy uses 0.4)."
        ),
    )
    epsilon_alpha: float = Field(
        7.0, ge=0.0, description="α of the exploration ladder: the last sub-env explores with ε^(1+α)."
    )
    training_intensity: float = Field(
        1.0,
        gt=0.0,
        description=(
            "Replay ratio: transitions trained on per env step sampled (after learning starts). The learner "
            "waits for samples when ahead of it and the runners idle when it is behind, so it neither "
            "overfits a small buffer nor falls behind the data."
        ),
    )

    @model_validator(mode="after")
    def _consistent(self) -> APEXConfig:
        check_replay(self)
        return self
