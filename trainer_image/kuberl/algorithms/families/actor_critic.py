"""The advantage actor-critic objective and its learner, shared by A2C, A3C and PG.

Mnih et al. 2016 (https://arxiv.org/abs/1602.01783) and Williams 1992 share one loss: the policy
gradient weighted by an advantage, a regression of V(s) on the return, and an entropy bonus. They
differ only in how the advantage is estimated and in how gradients reach the parameters (one
synchronous step, or asynchronous gradients from the env runners); those parts stay in each
algorithm's file.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from kuberl.core.distributions import ActionDistribution
from kuberl.core.learner import Learner, driver_learner_device
from kuberl.core.learner import normalize_advantages as _normalize
from kuberl.core.models import action_distribution, build_model
from kuberl.core.optim import Adam, RMSprop
from kuberl.core.returns import discounted_returns, gae
from kuberl.core.sample_batch import Columns, SampleBatch
from kuberl.spec.common import ResourcesSpec

OptimizerName = Literal["adam", "rmsprop"]

# Columns the loss reads; the rest of a sampled batch (terminateds, next values…) stays behind.
LOSS_COLUMNS = (Columns.OBS, Columns.ACTIONS, Columns.ADVANTAGES, Columns.VALUE_TARGETS, Columns.VF_PREDS)


# ---------------------------------------------------------------------------------------------------
# Advantages
# ---------------------------------------------------------------------------------------------------


def advantages_and_targets(
    batch: SampleBatch, *, gamma: float, lambda_: float, use_gae: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(advantages, value targets), both [T, N] float32.

    use_gae: GAE(γ, λ). Otherwise the n-step return of A3C's paper: rewards discounted up to the end
    of the fragment and bootstrapped there with V (and at truncations), advantage = return − V(s).
    Terminations never bootstrap (kuberl.core.returns handles both cases).
    """
    rewards = batch[Columns.REWARDS]
    values = batch[Columns.VF_PREDS]
    next_values = batch[Columns.NEXT_VF_PREDS]
    terminateds, truncateds = batch[Columns.TERMINATEDS], batch[Columns.TRUNCATEDS]
    if use_gae:
        return gae(rewards, values, next_values, terminateds, truncateds, gamma=gamma, lambda_=lambda_)
    returns = discounted_returns(rewards, next_values, terminateds, truncateds, gamma=gamma)
    return (returns - values).astype(np.float32), returns.astype(np.float32)


def loss_batch(batch: SampleBatch, *, gamma: float, lambda_: float, use_gae: bool) -> SampleBatch:
    """A sampled [T, N] batch → the flat [T*N] columns the loss needs, advantages added."""
    adv, targets = advantages_and_targets(batch, gamma=gamma, lambda_=lambda_, use_gae=use_gae)
    # Copies: arrays from Ray's object store are read-only, which torch warns about when wrapping them.
    with_adv = SampleBatch({k: np.array(batch[k]) for k in LOSS_COLUMNS if k in batch})
    with_adv[Columns.ADVANTAGES] = adv
    with_adv[Columns.VALUE_TARGETS] = targets
    return with_adv.flatten()


# ---------------------------------------------------------------------------------------------------
# Loss
# ---------------------------------------------------------------------------------------------------


def actor_critic_loss(
    module: nn.Module,
    dist: ActionDistribution,
    mb: Mapping[str, torch.Tensor],
    *,
    vf_loss_coeff: float,
    entropy_coeff: float,
    normalize_advantages: bool,
    world_size: int = 1,
) -> dict[str, torch.Tensor]:
    """Named terms; `total_loss = policy_loss + vf_loss_coeff·vf_loss − entropy_coeff·entropy`.

    policy_loss = −mean(log π(a|s) · A), A held constant; vf_loss = ½·mean((V(s) − R)²). With
    `world_size` data-parallel learners `mb` is this rank's part of the minibatch.
    """
    dist_in, values = module(mb[Columns.OBS])
    logp = dist.logp(dist_in, mb[Columns.ACTIONS])
    adv = mb[Columns.ADVANTAGES]
    if normalize_advantages and adv.numel() * world_size > 1:
        adv = _normalize(adv, world_size=world_size)
    policy_loss = -(logp * adv.detach()).mean()
    vf_loss = 0.5 * (values - mb[Columns.VALUE_TARGETS]).pow(2).mean()
    entropy = dist.entropy(dist_in).mean()
    total = policy_loss + vf_loss_coeff * vf_loss - entropy_coeff * entropy
    return {"total_loss": total, "policy_loss": policy_loss, "vf_loss": vf_loss, "entropy": entropy}


def explained_variance(pred: np.ndarray, target: np.ndarray) -> float:
    var = float(np.var(target))
    return float("nan") if var == 0.0 else 1.0 - float(np.var(target - pred)) / var


# ---------------------------------------------------------------------------------------------------
# Optimizer and learner
# ---------------------------------------------------------------------------------------------------


def make_optimizer(
    params: Iterable[nn.Parameter], *, name: OptimizerName, lr: float, eps: float, rmsprop_alpha: float
) -> torch.optim.Optimizer:
    """RMSprop (the A3C paper's and SB3's A2C choice; α is the squared-gradient decay) or Adam: torch's,
    as kuberl.core.optim's classes (no torch._dynamo import). RMSprop takes torch's foreach form of the
    same update, bit-identical to its per-tensor loop on CPU (tests/unit/test_optim_step.py) and ~20%
    faster for A2C's small networks; torch picks that loop by default on CPU."""
    if name == "rmsprop":
        return RMSprop(params, lr=lr, alpha=rmsprop_alpha, eps=eps, foreach=True)
    return Adam(params, lr=lr, eps=eps)


def gradients_to_numpy(module: nn.Module) -> dict[str, np.ndarray]:
    """The module's current gradients by parameter name (zeros where a parameter got none)."""
    return {
        name: (p.grad.detach().cpu().numpy() if p.grad is not None else np.zeros(tuple(p.shape), np.float32))
        for name, p in module.named_parameters()
    }


class ActorCriticLearner(Learner):
    """The base Learner with a choice of optimizer, the actor-critic loss, and the two ways A2C/PG and
    A3C update: `update()` computes gradients here; `apply_numpy_gradients()` applies a runner's."""

    # The base class builds Adam; this one may hold RMSprop instead.
    optimizer: torch.optim.Optimizer  # type: ignore[assignment]

    def __init__(
        self,
        module: nn.Module,
        dist: ActionDistribution,
        *,
        lr: float,
        lr_schedule: Sequence[tuple[int, float]] | None,
        grad_clip: float | None,
        device: torch.device,
        optimizer: OptimizerName,
        optimizer_eps: float,
        rmsprop_alpha: float,
        vf_loss_coeff: float,
        entropy_coeff: float,
        normalize_advantages: bool,
    ) -> None:
        super().__init__(module, lr=lr, grad_clip=grad_clip, device=device, lr_schedule=lr_schedule)
        self.optimizer = make_optimizer(
            self.module.parameters(), name=optimizer, lr=lr, eps=optimizer_eps, rmsprop_alpha=rmsprop_alpha
        )
        self.dist = dist
        self.vf_loss_coeff = vf_loss_coeff
        self.entropy_coeff = entropy_coeff
        self.normalize_advantages = normalize_advantages

    @classmethod
    def from_config(
        cls, obs_space: gym.Space[Any], action_space: gym.Space[Any], config: Any, resources: ResourcesSpec
    ) -> ActorCriticLearner:
        """The learner A2C, A3C and PG build from their (same-named) config fields."""
        return cls(
            build_model(obs_space, action_space, config.model),
            action_distribution(action_space),
            lr=config.lr,
            lr_schedule=config.lr_schedule,
            grad_clip=config.grad_clip,
            device=driver_learner_device(resources),
            optimizer=config.optimizer,
            optimizer_eps=config.optimizer_eps,
            rmsprop_alpha=config.rmsprop_alpha,
            vf_loss_coeff=config.vf_loss_coeff,
            entropy_coeff=config.entropy_coeff,
            normalize_advantages=config.normalize_advantages,
        )

    def loss(self, mb: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return actor_critic_loss(
            self.train_module,
            self.dist,
            mb,
            vf_loss_coeff=self.vf_loss_coeff,
            entropy_coeff=self.entropy_coeff,
            normalize_advantages=self.normalize_advantages,
            world_size=self.world_size,
        )

    def _clip_and_step(self) -> float:
        return float(self.clip_and_step(self.optimizer))

    def update(
        self,
        batch: Mapping[str, np.ndarray],
        *,
        timesteps: int,
        minibatch_size: int | None,
        microbatch_size: int | None,
        generator: torch.Generator,
    ) -> dict[str, float]:
        """One pass over a flat batch: one optimizer step per minibatch (the whole batch when
        `minibatch_size` is None). Each step's gradient is accumulated over microbatches of
        `microbatch_size` (memory only: the result is the same gradient). As one of N data-parallel
        ranks, `batch` is a 1/N shard and a minibatch is 1/N of `minibatch_size`."""
        lr = self.update_lr(timesteps)
        data = self.to_tensors(batch)
        n = len(data[Columns.ADVANTAGES])
        size = min(minibatch_size // self.world_size if minibatch_size else n, n)
        if size < n:
            perm = torch.randperm(n, generator=generator).to(self.device)
            data = {k: v[perm] for k, v in data.items()}
        micro = min(microbatch_size or size, size)
        # Each term with its weight, turned into floats once after the loop (not a host sync per term).
        weighted: list[tuple[str, torch.Tensor, int]] = []
        steps = 0
        stepper = self.stepper(self.optimizer)
        for start in range(0, n - size + 1, size):
            stepper.zero_grad()
            for m in range(start, start + size, micro):
                end = min(m + micro, start + size)
                with self.grad_sync(last=end == start + size):
                    terms = self.loss({k: v[m:end] for k, v in data.items()})
                    (terms["total_loss"] * ((end - m) / size)).backward()
                weighted += [(k, v.detach(), end - m) for k, v in terms.items()]
            weighted.append(("grad_norm", self.clip_and_step(self.optimizer), size))
            steps += 1
        sums: dict[str, float] = {}
        for k, v, w in weighted:
            sums[k] = sums.get(k, 0.0) + (float(v) * w / size if k != "grad_norm" else float(v))
        stats = {k: v / max(steps, 1) for k, v in sums.items()}
        stats["lr"] = lr
        stats["num_grad_updates"] = float(steps)
        stats["explained_variance"] = explained_variance(
            batch[Columns.VF_PREDS], batch[Columns.VALUE_TARGETS]
        )
        return stats

    def apply_numpy_gradients(self, grads: Mapping[str, np.ndarray], *, timesteps: int) -> float:
        """Apply gradients computed elsewhere (an A3C runner); returns their global norm before clipping."""
        self.update_lr(timesteps)
        for name, p in self.module.named_parameters():
            p.grad = torch.from_numpy(np.array(grads[name], dtype=np.float32)).to(
                self.device
            )  # copy: Ray's arrays are read-only
        return self._clip_and_step()
