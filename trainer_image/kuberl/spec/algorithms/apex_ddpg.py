"""Ape-X DDPG's hyperparameters (the algorithm itself is kuberl.algorithms.apex_ddpg).

Distributed prioritized experience replay (Horgan et al. 2018, https://arxiv.org/abs/1803.00933, §4.2)
for DDPG: DDPG's learner (one critic, Polyak targets, n-step returns) fed by many asynchronous env
runners, each sub-env exploring with its own fixed action-noise scale (the ladder Ape-X DQN uses for ε),
its transitions entering prioritized replay with initial priorities. Every DDPG field applies; RLlib's
`APEX_DDPG` names are used where they exist.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from kuberl.spec.algorithms.ddpg import DDPGConfig
from kuberl.spec.algorithms.distributed_replay import DistributedReplayFields
from kuberl.spec.algorithms.offpolicy_actor_critic import OffPolicyReplayConfig
from kuberl.spec.capabilities import BOX, Capabilities


class PrioritizedReplayConfig(OffPolicyReplayConfig):
    """DDPG's replay_buffer_config, prioritized only: distributed replay is prioritized replay."""

    type: Literal["PrioritizedReplayBuffer"] = Field(
        "PrioritizedReplayBuffer",
        description="Always PrioritizedReplayBuffer (samples by |TD error|; use DDPG for uniform replay).",
    )


class APEX_DDPGConfig(DistributedReplayFields, DDPGConfig):  # noqa: N801 (the algorithm's name, as RLlib spells it)
    """Ape-X DDPG: asynchronous env runners on a per-sub-env noise-scale ladder, initial priorities for
    new transitions, one DDPG learner training continuously on prioritized replay at a fixed replay ratio."""

    implementation: ClassVar[str] = "kuberl.algorithms.apex_ddpg:APEX_DDPG"
    capabilities: ClassVar[Capabilities] = Capabilities(BOX, observation_filter=False)
    algorithm: Literal["APEX_DDPG"] = Field(  # type: ignore[assignment]
        "APEX_DDPG", exclude=True, description="Discriminator; set from spec.algorithm."
    )
    replay_buffer_config: PrioritizedReplayConfig = Field(
        default_factory=PrioritizedReplayConfig, description="Prioritized replay: capacity and priorities."
    )
    n_step: int = Field(
        3, ge=1, description="n-step returns: bootstrap after n rewards (cut at episode and fragment ends)."
    )
    noise_scale_base: float = Field(
        0.4,
        gt=0.0,
        description=(
            "Base of the per-sub-env exploration ladder: sub-env i of the N = envRunners × envsPerRunner "
            "explores with explorationConfig's noise times base^(1 + α·i/(N−1)) (RLlib's "
            "PerWorkerGaussianNoise / PerWorkerOrnsteinUhlenbeckNoise use 0.4 and 7)."
        ),
    )
    noise_scale_alpha: float = Field(
        7.0, ge=0.0, description="α of the noise ladder: the last sub-env's noise is scaled by base^(1+α)."
    )

    @model_validator(mode="after")
    def _apex_consistent(self) -> APEX_DDPGConfig:
        expl = self.exploration_config
        if expl.initial_scale != 1.0 or expl.final_scale != 1.0:
            raise ValueError(
                "exploration_config.initial_scale/final_scale do not apply to APEX_DDPG: each sub-env keeps "
                "its fixed rung of the noise ladder (set noise_scale_base and noise_scale_alpha)"
            )
        return self
