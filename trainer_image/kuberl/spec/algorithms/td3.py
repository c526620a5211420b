"""TD3's hyperparameters (the algorithm itself is kuberl.algorithms.td3)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from kuberl.spec.algorithms.offpolicy_actor_critic import ExplorationConfig, OffPolicyActorCriticConfig
from kuberl.spec.capabilities import BOX, Capabilities


class TD3Config(OffPolicyActorCriticConfig):
    """Twin Delayed DDPG (Fujimoto et al. 2018, https://arxiv.org/abs/1802.09477)."""

    implementation: ClassVar[str] = "kuberl.algorithms.td3:TD3"
    capabilities: ClassVar[Capabilities] = Capabilities(BOX, multi_agent=True, observation_filter=False)
    algorithm: Literal["TD3"] = Field(
        "TD3", exclude=True, description="Discriminator; set from spec.algorithm."
    )
    lr: float = Field(1e-3, gt=0.0, description="Default learning rate of the actor and critic (Adam).")
    twin_q: bool = Field(True, description="Two critics and the minimum of their targets (clipped double Q).")
    policy_delay: int = Field(
        2, ge=1, description="Critic updates per actor (and target network) update: delayed policy updates."
    )
    smooth_target_policy: bool = Field(
        True, description="Target policy smoothing: add clipped noise to the target actor's action."
    )
    target_noise: float = Field(
        0.2, ge=0.0, description="Std of the smoothing noise, in units of the action half-range."
    )
    target_noise_clip: float = Field(
        0.5, ge=0.0, description="Clip the smoothing noise to ±this (action half-range units)."
    )
    exploration_config: ExplorationConfig = Field(
        default_factory=ExplorationConfig, description="Exploration noise added to the actor's actions."
    )
