"""CQL's hyperparameters (the algorithm itself is kuberl.algorithms.cql)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from kuberl.spec.algorithms.base import ModelConfig, OffFloat
from kuberl.spec.algorithms.offline import OfflineConfigBase
from kuberl.spec.capabilities import BOX, Capabilities


def _cql_model() -> ModelConfig:
    return ModelConfig(fcnet_hiddens=[256, 256], fcnet_activation="relu")


class CQLConfig(OfflineConfigBase):
    """Conservative Q-Learning (Kumar et al. 2020, https://arxiv.org/abs/2006.04779), the CQL(H)
    variant on Soft Actor-Critic for continuous actions; trains from spec.input."""

    implementation: ClassVar[str] = "kuberl.algorithms.cql:CQL"
    capabilities: ClassVar[Capabilities] = Capabilities(BOX, offline_input=True, offline_output=False)
    algorithm: Literal["CQL"] = Field(
        "CQL", exclude=True, description="Discriminator; set from spec.algorithm."
    )
    lr: float = Field(3e-4, gt=0.0, description="Learning rate of actor, critics and α unless set apart.")
    actor_lr: float | None = Field(None, gt=0.0, description="Actor learning rate (null: lr).")
    critic_lr: float | None = Field(None, gt=0.0, description="Critic learning rate (null: lr).")
    alpha_lr: float | None = Field(None, gt=0.0, description="Temperature learning rate (null: lr).")
    grad_clip: OffFloat = Field(
        None, gt=0.0, description="Clip each network's gradient norm (off: no clipping)."
    )
    model: ModelConfig = Field(
        default_factory=_cql_model,
        description="Actor and critic MLPs (default 256-256 ReLU, the CQL paper's); the actor is tanh-squashed.",
    )
    tau: float = Field(0.005, gt=0.0, le=1.0, description="Polyak coefficient of the target critics.")
    twin_q: bool = Field(True, description="Two critics and the minimum of their targets (clipped double Q).")
    initial_alpha: float = Field(1.0, gt=0.0, description="Initial entropy temperature α.")
    target_entropy: float | Literal["auto"] = Field(
        "auto", description="Entropy α is tuned towards; auto: −|A|."
    )
    min_q_weight: float = Field(
        5.0,
        ge=0.0,
        description="Weight of the conservative penalty E_s[log Σ_a exp Q(s,a)] − E_data[Q(s,a)].",
    )
    num_actions: int = Field(
        10,
        ge=1,
        description="Actions sampled per state (uniform, π(s) and π(s') each) to estimate the log-sum-exp.",
    )
    temperature: float = Field(1.0, gt=0.0, description="Temperature of the log-sum-exp in the penalty.")
    bc_iters: int = Field(
        0,
        ge=0,
        description=(
            "Gradient steps at the start in which the actor imitates the data (maximises log π(a|s)) "
            "instead of the critics (RLlib's default is 20000)."
        ),
    )
