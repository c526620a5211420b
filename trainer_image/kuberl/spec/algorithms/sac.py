"""SAC's hyperparameters (the algorithm itself is kuberl.algorithms.sac)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from kuberl.spec.algorithms.offpolicy_actor_critic import OffPolicyActorCriticConfig
from kuberl.spec.capabilities import ANY_SPACE, Capabilities


class SACConfig(OffPolicyActorCriticConfig):
    """Soft Actor-Critic (Haarnoja et al. 2018, https://arxiv.org/abs/1812.05905), with the
    discrete-action variant (Christodoulou 2019, https://arxiv.org/abs/1910.07207) chosen by the
    env's action space."""

    implementation: ClassVar[str] = "kuberl.algorithms.sac:SAC"
    capabilities: ClassVar[Capabilities] = Capabilities(
        ANY_SPACE, multi_agent=True, action_masks="own", observation_filter=False
    )
    algorithm: Literal["SAC"] = Field(
        "SAC", exclude=True, description="Discriminator; set from spec.algorithm."
    )
    twin_q: bool = Field(
        True,
        description="Two critics and the minimum of their targets (clipped double Q) against overestimation.",
    )
    initial_alpha: float = Field(1.0, gt=0.0, description="Initial entropy temperature α.")
    target_entropy: float | Literal["auto"] = Field(
        "auto",
        description=(
            "Entropy the temperature is tuned towards. auto: −|A| for continuous actions, "
            "0.98·log(n) for n discrete actions (Christodoulou 2019)."
        ),
    )
    alpha_lr: float | None = Field(None, gt=0.0, description="Temperature learning rate (null: lr).")
    tune_alpha: bool = Field(
        True,
        description="Learn α by gradient descent on the entropy constraint; false keeps initialAlpha fixed.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> SACConfig:
        if not self.tune_alpha and self.alpha_lr is not None:
            raise ValueError(
                "alpha_lr is set but tune_alpha is false: the temperature would never be updated"
            )
        if not self.tune_alpha and self.target_entropy != "auto":
            raise ValueError("target_entropy is set but tune_alpha is false: it is only used to tune α")
        return self
