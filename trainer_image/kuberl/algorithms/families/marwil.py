"""The MARWIL objective and learner, shared by MARWIL and BC (BC is MARWIL with β = 0).

Wang et al. 2018, "Exponentially Weighted Imitation Learning for Batched Historical Data"
(https://papers.nips.cc/paper/7866): maximise E[exp(β·A(s,a)/c) log π(a|s)] over the logged (s, a),
with A = G − V(s) from the logged returns-to-go G and a learned baseline V, and c² a moving average of
the squared advantage (the paper's normaliser, updated as RLlib does). With β = 0 every weight is 1:
plain maximum likelihood, i.e. behaviour cloning.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from kuberl.algorithms.families.offline import OfflineAlgorithm
from kuberl.core.distributions import ActionDistribution
from kuberl.core.learner import Learner, select_device
from kuberl.core.models import action_distribution, build_model
from kuberl.core.offline.schema import C
from kuberl.spec.algorithms.bc import BCConfig
from kuberl.spec.algorithms.marwil import MARWILConfig


def marwil_loss(
    module: nn.Module,
    dist: ActionDistribution,
    mb: Mapping[str, torch.Tensor],
    *,
    beta: float,
    vf_coeff: float,
    sqd_adv_norm: float,
    max_weight: float | None,
) -> dict[str, torch.Tensor]:
    """Named terms; `total_loss = policy_loss + vf_coeff·vf_loss`.

    policy_loss = −mean(w · log π(a|s)), w = min(exp(β·A/√c²), max_weight) held constant;
    vf_loss = ½·mean((V(s) − G)²). With β = 0 the value head is not trained (w ≡ 1).
    """
    dist_in, values = module(mb[C.OBS])
    logp = dist.logp(dist_in, mb[C.ACTIONS])
    terms: dict[str, torch.Tensor] = {}
    if beta > 0.0:
        returns = mb[C.RETURNS_TO_GO]
        adv = (returns - values).detach()
        weights = torch.exp(beta * adv / (np.sqrt(sqd_adv_norm) + 1e-8))
        if max_weight is not None:
            weights = weights.clamp(max=max_weight)
        vf_loss = 0.5 * (values - returns).pow(2).mean()
        policy_loss = -(weights * logp).mean()
        total = policy_loss + vf_coeff * vf_loss
        terms |= {"vf_loss": vf_loss, "mean_weight": weights.mean(), "sqd_adv": adv.pow(2).mean()}
    else:
        policy_loss = -logp.mean()
        total = policy_loss
    with torch.no_grad():
        entropy = dist.entropy(dist_in).mean()
    return {"total_loss": total, "policy_loss": policy_loss, "entropy": entropy, **terms}


class MARWILLearner(Learner):
    """One gradient step per minibatch; keeps the moving average c² of the squared advantage."""

    def __init__(
        self,
        module: nn.Module,
        dist: ActionDistribution,
        *,
        lr: float,
        grad_clip: float | None,
        device: torch.device,
        beta: float,
        vf_coeff: float,
        sqd_adv_norm_start: float,
        sqd_adv_norm_rate: float,
        max_weight: float | None,
    ) -> None:
        super().__init__(module, lr=lr, grad_clip=grad_clip, device=device)
        self.dist = dist
        self.beta = beta
        self.vf_coeff = vf_coeff
        self.sqd_adv_norm = sqd_adv_norm_start
        self.sqd_adv_norm_rate = sqd_adv_norm_rate
        self.max_weight = max_weight

    def update(self, batch: Mapping[str, np.ndarray]) -> dict[str, float]:
        terms = marwil_loss(
            self.module,
            self.dist,
            self.to_tensors(batch),
            beta=self.beta,
            vf_coeff=self.vf_coeff,
            sqd_adv_norm=self.sqd_adv_norm,
            max_weight=self.max_weight,
        )
        grad_norm = self.step(terms["total_loss"])
        stats = {k: float(v.detach()) for k, v in terms.items()}
        if "sqd_adv" in stats:
            self.sqd_adv_norm += self.sqd_adv_norm_rate * (stats["sqd_adv"] - self.sqd_adv_norm)
            stats["sqd_adv_norm"] = self.sqd_adv_norm
        stats["grad_norm"] = float(grad_norm)
        return stats

    @torch.no_grad()
    def logp(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        dist_in, _ = self.module(torch.as_tensor(obs, device=self.device))
        out = self.dist.logp(dist_in, torch.as_tensor(actions, device=self.device))
        return np.asarray(out.cpu().numpy(), dtype=np.float64)

    def get_state(self) -> dict[str, Any]:
        return {**super().get_state(), "sqd_adv_norm": self.sqd_adv_norm}

    def set_state(self, state: Mapping[str, Any]) -> None:
        super().set_state(state)
        self.sqd_adv_norm = float(state.get("sqd_adv_norm", self.sqd_adv_norm))


ImitationConfigT = TypeVar("ImitationConfigT", bound=BCConfig | MARWILConfig)


class AdvantageWeightedAlgorithm(OfflineAlgorithm[ImitationConfigT]):
    """BC and MARWIL: an actor-critic module (kuberl.core.models) trained by `MARWILLearner`; the
    subclass names the loss options in `loss_options()`."""

    learner: MARWILLearner

    def loss_options(self) -> dict[str, Any]:
        raise NotImplementedError

    def setup_learner(self) -> None:
        res = self.spec.resources
        self.learner = MARWILLearner(
            build_model(self.obs_space, self.action_space, self.config.model),
            action_distribution(self.action_space),
            lr=self.config.lr,
            grad_clip=self.config.grad_clip,
            device=select_device(res.gpus_per_learner, cpus_per_learner=res.cpus_per_learner),
            **self.loss_options(),
        )

    def update(self, batch: dict[str, np.ndarray]) -> dict[str, float]:
        return self.learner.update(batch)

    def target_logp(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray | None:
        return self.learner.logp(obs, actions)
