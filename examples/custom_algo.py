"""A custom algorithm: PPO with an extra loss term (docs/custom-algorithms.md).

`spec.algorithm: examples.custom_algo:EntropyTargetPPO` trains this class. It is built from kuberl's
own parts, by subclassing:

- the config model `EntropyTargetPPOConfig(PPOConfig)` adds two fields, validated like every built-in
  field (`kuberl run` refuses a bad value naming `config.entropyTarget`, exit 2);
- the learner `EntropyTargetLearner(PPOLearner)` overrides `loss()`: PPO's terms, plus
  `entropyTargetCoeff · (H − entropyTarget)²`, which pulls the policy's mean entropy H towards a target
  instead of only pushing it up (PPO's entropy bonus) — exploration that neither collapses early nor
  stays random once the task is learnt;
- the algorithm `EntropyTargetPPO(PPO)` names both: `config_class` and `learner_class`.

Everything else (env runners, GAE, minibatch epochs, data-parallel learners, checkpoints, evaluation,
the operator) is PPO's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import ClassVar

import torch
from pydantic import Field

from kuberl.algorithms.ppo import PPO, PPOLearner
from kuberl.core.sample_batch import Columns
from kuberl.spec.algorithms import PPOConfig
from kuberl.spec.capabilities import Capabilities


class EntropyTargetPPOConfig(PPOConfig):
    """PPO's fields plus the entropy target."""

    # What the job may combine it with: PPO's features but recurrent policies (loss() below evaluates
    # flat minibatches only), so `model.useLstm` is refused naming the field, as for a built-in.
    capabilities: ClassVar[Capabilities] = replace(PPOConfig.capabilities, recurrent=False)

    entropy_target: float = Field(
        0.3,
        ge=0.0,
        description="Target mean entropy of the policy, in nats (CartPole's uniform policy: 0.69).",
    )
    entropy_target_coeff: float = Field(
        0.05, ge=0.0, description="Weight of the squared distance to the target in the loss."
    )


class EntropyTargetLearner(PPOLearner):
    config: EntropyTargetPPOConfig

    def loss(self, mb: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        terms = super().loss(mb)
        # ppo_loss computes the entropy with gradients only when entropyCoeff > 0; recompute it here.
        dist_in, _ = self.train_module(mb[Columns.OBS])
        entropy = self.dist.entropy(dist_in).mean()
        extra = self.config.entropy_target_coeff * (entropy - self.config.entropy_target).pow(2)
        return {**terms, "total_loss": terms["total_loss"] + extra, "entropy_target_loss": extra}


class EntropyTargetPPO(PPO):
    name = "EntropyTargetPPO"
    config_class: ClassVar[type[PPOConfig]] = EntropyTargetPPOConfig
    learner_class: ClassVar[type[PPOLearner]] = EntropyTargetLearner
