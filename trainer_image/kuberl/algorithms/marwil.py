"""MARWIL: behaviour cloning re-weighted by the exponentiated advantage (Wang et al. 2018,
https://papers.nips.cc/paper/7866).

Reads top to bottom like the paper's algorithm:
  config  → `MARWILConfig` (kuberl.spec.algorithms.marwil; RLlib names accepted)
  data    → `spec.input` through Ray Data with the discounted returns-to-go G of each logged episode
            computed by the reader with this config's γ (kuberl.core.offline.reader)
  network → `ActorCritic` (kuberl.core.models): the policy and the value baseline V(s)
  loss    → −mean(exp(β·(G − V(s))/c) · log π(a|s)) + vf_coeff · ½(V(s) − G)², c² a moving average of
            the squared advantage (`marwil_loss`, kuberl.algorithms.families.marwil)
  step    → `OfflineAlgorithm.training_step`: updatesPerIteration minibatches of trainBatchSize rows
"""

from __future__ import annotations

from typing import Any, ClassVar

from kuberl.algorithms.families.marwil import AdvantageWeightedAlgorithm
from kuberl.core.offline.schema import C
from kuberl.spec.algorithms.marwil import MARWILConfig


class MARWIL(AdvantageWeightedAlgorithm[MARWILConfig]):
    name = "MARWIL"
    data_columns: ClassVar[tuple[str, ...]] = (C.OBS, C.ACTIONS, C.RETURNS_TO_GO)

    def returns_gamma(self) -> float | None:
        return self.config.gamma

    def loss_options(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "beta": cfg.beta,
            "vf_coeff": cfg.vf_coeff,
            "sqd_adv_norm_start": cfg.moving_average_sqd_adv_norm_start,
            "sqd_adv_norm_rate": cfg.moving_average_sqd_adv_norm_update_rate,
            "max_weight": cfg.max_weight,
        }
