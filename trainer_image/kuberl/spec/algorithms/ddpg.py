"""DDPG's hyperparameters (the algorithm itself is kuberl.algorithms.ddpg)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from kuberl.spec.algorithms.offpolicy_actor_critic import ExplorationConfig, OffPolicyActorCriticConfig
from kuberl.spec.capabilities import BOX, Capabilities

_TD3_ONLY = {
    "twin_q": "twinQ",
    "policy_delay": "policyDelay",
    "smooth_target_policy": "smoothTargetPolicy",
    "target_noise": "targetNoise",
    "target_noise_clip": "targetNoiseClip",
}


class DDPGConfig(OffPolicyActorCriticConfig):
    """Deep Deterministic Policy Gradient (Lillicrap et al. 2016, https://arxiv.org/abs/1509.02971): one
    critic, no target policy smoothing, the actor updated with every critic update."""

    implementation: ClassVar[str] = "kuberl.algorithms.ddpg:DDPG"
    capabilities: ClassVar[Capabilities] = Capabilities(BOX, multi_agent=True, observation_filter=False)
    algorithm: Literal["DDPG"] = Field(
        "DDPG", exclude=True, description="Discriminator; set from spec.algorithm."
    )
    lr: float = Field(1e-3, gt=0.0, description="Default learning rate of the actor and critic (Adam).")
    exploration_config: ExplorationConfig = Field(
        default_factory=ExplorationConfig, description="Exploration noise added to the actor's actions."
    )

    @model_validator(mode="before")
    @classmethod
    def _not_td3(cls, data: Any) -> Any:
        if isinstance(data, dict):
            given = [camel for snake, camel in _TD3_ONLY.items() if snake in data or camel in data]
            if given:
                raise ValueError(
                    f"{', '.join(given)}: DDPG has one critic, no target smoothing and no policy delay; "
                    "use algorithm TD3 for these"
                )
        return data
