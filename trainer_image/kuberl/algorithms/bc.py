"""Behaviour cloning: imitate the recorded actions by maximum likelihood.

Reads top to bottom:
  config  → `BCConfig` (kuberl.spec.algorithms.bc; RLlib names accepted)
  data    → `spec.input` through Ray Data (kuberl.core.offline.reader): shuffled (obs, action) rows
  network → `ActorCritic` (kuberl.core.models); only the policy head is trained
  loss    → −mean log π(a|s): `marwil_loss` with β = 0 (kuberl.algorithms.families.marwil), as in RLlib,
            where BC is MARWIL with β = 0
  step    → `OfflineAlgorithm.training_step`: updatesPerIteration minibatches of trainBatchSize rows
"""

from __future__ import annotations

from typing import Any

from kuberl.algorithms.families.marwil import AdvantageWeightedAlgorithm
from kuberl.spec.algorithms.bc import BCConfig


class BC(AdvantageWeightedAlgorithm[BCConfig]):
    name = "BC"

    def loss_options(self) -> dict[str, Any]:
        # Every weight is 1 and the value head is left alone: plain maximum likelihood.
        return {
            "beta": 0.0,
            "vf_coeff": 0.0,
            "sqd_adv_norm_start": 1.0,
            "sqd_adv_norm_rate": 0.0,
            "max_weight": None,
        }
