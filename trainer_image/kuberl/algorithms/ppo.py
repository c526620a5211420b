"""Proximal Policy Optimization (Schulman et al. 2017, https://arxiv.org/abs/1707.06347).

Reads top to bottom like the paper's Algorithm 1:
  config  → `PPOConfig` (kuberl.spec.algorithms; every field documented there, RLlib names accepted)
  network → `ActorCritic` (kuberl.core.models): MLP policy and value heads, shared or separate;
            with `model.use_lstm` a `RecurrentActorCritic` (kuberl.core.recurrent)
  loss    → `ppo_loss`: clipped surrogate + (optionally clipped) value loss − entropy bonus + KL penalty
  step    → sample in parallel → GAE (`PPO.estimate_returns`) → epochs of shuffled minibatches
            (`PPO.learn`) → broadcast weights; the step itself is kuberl.algorithms.families.sync's

Recurrent policies train on minibatches of whole sequences: each rollout is cut into chunks of
`max_seq_len` steps that start from the LSTM state the runner recorded there, and the chunks (not
single steps) are shuffled. GAE is computed on the full rollouts first, exactly as without the LSTM.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from kuberl.algorithms.families.sync import SyncSamplingAlgorithm
from kuberl.core.distributions import ActionDistribution
from kuberl.core.learner import Learner, driver_learner_device, mean_across_ranks, normalize_advantages
from kuberl.core.models import action_distribution, build_model
from kuberl.core.recurrent import (
    RecurrentColumns,
    SequenceForward,
    chunk_sequences,
    episode_starts,
    is_recurrent,
    runner_overrides,
    sequence_length,
)
from kuberl.core.returns import gae
from kuberl.core.sample_batch import Columns, SampleBatch
from kuberl.spec.algorithms import PPOConfig

# ---------------------------------------------------------------------------------------------------
# Loss
# ---------------------------------------------------------------------------------------------------


def ppo_loss(
    module: torch.nn.Module,
    dist: ActionDistribution,
    mb: Mapping[str, torch.Tensor],
    *,
    config: PPOConfig,
    kl_coeff: float,
    world_size: int = 1,
    deferred: list[StatisticInputs] | None = None,
) -> dict[str, torch.Tensor]:
    """The PPO objective on one minibatch, as named terms; `total_loss` is what gets minimised.

    Entropy and KL at weight 0 and the clip fraction are statistics only. With `deferred` (a learner's
    list) they are not computed here: what they are computed from is appended to it, and
    `ppo_statistics` computes them for a whole epoch at once (the same values; see there).

    A recurrent minibatch holds time-major sequences [L, S, …] (see PPO.training_step): `module` is then
    the network's `SequenceForward` (or DDP around it), unrolled over them by its `forward()`, and the loss
    treats their L·S steps like a flat minibatch. With `world_size` data-parallel learners, `mb` is this
    rank's 1/world_size of the minibatch (advantages are normalised over all of it)."""
    if RecurrentColumns.STATE_H in mb:
        if is_recurrent(module):  # a bare network (no learner around it)
            module = SequenceForward(module)  # type: ignore[arg-type]
        dist_in, values = module(mb)
        dist_in, values = dist_in.flatten(0, 1), values.flatten(0, 1)
        mb = {k: v.flatten(0, 1) for k, v in mb.items() if k not in RecurrentColumns.ALL}
    else:
        dist_in, values = module(mb[Columns.OBS])
    logp = dist.logp(dist_in, mb[Columns.ACTIONS])
    ratio = torch.exp(logp - mb[Columns.ACTION_LOGP])

    adv = mb[Columns.ADVANTAGES]
    if config.normalize_advantages and adv.numel() * world_size > 1:
        adv = normalize_advantages(adv, world_size=world_size)
    surrogate = torch.min(
        ratio * adv, torch.clamp(ratio, 1.0 - config.clip_param, 1.0 + config.clip_param) * adv
    )
    policy_loss = -surrogate.mean()

    targets = mb[Columns.VALUE_TARGETS]
    vf_err = (values - targets).pow(2)
    if config.vf_clip_param is not None:
        old = mb[Columns.VF_PREDS]
        clipped = old + torch.clamp(values - old, -config.vf_clip_param, config.vf_clip_param)
        vf_err = torch.max(vf_err, (clipped - targets).pow(2))
    vf_loss = 0.5 * vf_err.mean()

    total = policy_loss + config.vf_loss_coeff * vf_loss
    terms = {"total_loss": total, "policy_loss": policy_loss, "vf_loss": vf_loss}
    # Entropy and KL enter the graph only when weighted; otherwise they are statistics (no backward cost).
    if config.entropy_coeff > 0.0:
        terms["entropy"] = entropy = dist.entropy(dist_in).mean()
        terms["total_loss"] = total = total - config.entropy_coeff * entropy
    if kl_coeff > 0.0:
        terms["kl"] = kl = dist.kl(mb[Columns.ACTION_DIST_INPUTS], dist_in).mean()
        terms["total_loss"] = total + kl_coeff * kl
    inputs = StatisticInputs(dist_in.detach(), mb[Columns.ACTION_DIST_INPUTS], ratio.detach())
    if deferred is not None:
        deferred.append(inputs)
        return terms
    stats = ppo_statistics(dist, [inputs], clip_param=config.clip_param, skip=terms.keys())
    return {**terms, **{k: v[0] for k, v in stats.items()}}


@dataclass(frozen=True)
class StatisticInputs:
    """What one minibatch's statistics-only terms are computed from."""

    dist_inputs: torch.Tensor  # the policy's distribution inputs now (detached)
    old_dist_inputs: torch.Tensor  # the sampling policy's
    ratio: torch.Tensor  # π(a|s) / π_old(a|s) (detached)


def ppo_statistics(
    dist: ActionDistribution,
    minibatches: Sequence[StatisticInputs],
    *,
    clip_param: float,
    skip: Collection[str] = (),
) -> dict[str, torch.Tensor]:
    """Entropy, KL (from the sampling policy) and clip fraction of each of equal-sized minibatches, as
    tensors [number of minibatches], from one batched pass instead of a dozen small ops per minibatch
    (~7% of a minibatch-64 gradient step). The reductions run along the last axis, row by row, so each
    minibatch's mean is the one it would have alone. `skip`: terms already computed (in the loss)."""
    with torch.no_grad():
        new = torch.stack([m.dist_inputs for m in minibatches])
        stats = {"clip_frac": (torch.stack([m.ratio for m in minibatches]) - 1.0).abs().gt(clip_param)}
        if "entropy" not in skip:
            stats["entropy"] = dist.entropy(new)
        if "kl" not in skip:
            stats["kl"] = dist.kl(torch.stack([m.old_dist_inputs for m in minibatches]), new)
        return {k: v.float().mean(-1) for k, v in stats.items()}


# ---------------------------------------------------------------------------------------------------
# Learner: epochs of shuffled minibatches over one batch
# ---------------------------------------------------------------------------------------------------


class PPOLearner(Learner):
    """Epochs of shuffled minibatches. A flat batch [B] is shuffled by step; a recurrent module's batch
    of sequences [L, S] by sequence (axis 1), `minibatch_size // L` sequences per minibatch.

    As one of N data-parallel ranks it gets a 1/N shard (whole sequences, for a recurrent module) and takes
    minibatches of 1/N the size, so every rank runs the same number of steps and each step's global
    minibatch is still `minibatch_size`. A recurrent module trains through `SequenceForward`, whose
    `forward()` is the sequence unroll, so DDP's gradient averaging applies to it as to a feed-forward one."""

    def __init__(
        self, module: torch.nn.Module, dist: ActionDistribution, config: PPOConfig, device: torch.device
    ):
        super().__init__(
            module, lr=config.lr, grad_clip=config.grad_clip, device=device, lr_schedule=config.lr_schedule
        )
        self.config = config
        self.dist = dist
        self.kl_coeff = config.kl_coeff
        self.recurrent = is_recurrent(module)
        self.shard_axis = 1 if self.recurrent else 0
        # Inputs of the statistics ppo_loss defers while an epoch runs (see _add_epoch_statistics).
        self._deferred: list[StatisticInputs] | None = None
        if self.recurrent:
            self.train_module = SequenceForward(self.module)  # type: ignore[arg-type]

    def loss(self, mb: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The named loss terms of one minibatch; `total_loss` is minimised, every term is reported as a
        learner statistic. The extension point for a custom PPO (docs/custom-algorithms.md): override it,
        call super() and add to `total_loss`."""
        return ppo_loss(
            self.train_module,
            self.dist,
            mb,
            config=self.config,
            kl_coeff=self.kl_coeff,
            world_size=self.world_size,
            deferred=self._deferred,
        )

    def update(self, batch: SampleBatch, *, timesteps: int, generator: torch.Generator) -> dict[str, float]:
        cfg = self.config
        lr = self.update_lr(timesteps)
        data = self.to_tensors(batch)
        axis = 1 if self.recurrent else 0
        seq_len = data[Columns.REWARDS].shape[0] if self.recurrent else 1
        n = data[Columns.REWARDS].shape[axis]
        size = min(max(1, cfg.minibatch_size // seq_len // self.world_size), n)
        history: list[dict[str, torch.Tensor]] = []
        epochs_done = 0
        for _ in range(cfg.num_epochs):
            # One gather per column per epoch; minibatches are then cheap contiguous slices.
            perm = torch.randperm(n, generator=generator).to(self.device)
            shuffled = {k: v.index_select(axis, perm) for k, v in data.items()}
            epoch_start = len(history)
            self._deferred = []
            for start in range(0, n - size + 1, size):
                mb = {k: v.narrow(axis, start, size) for k, v in shuffled.items()}
                terms = self.loss(mb)
                grad_norm = self.step(terms["total_loss"])
                history.append({**{k: v.detach() for k, v in terms.items()}, "grad_norm": grad_norm})
            self._add_epoch_statistics(history[epoch_start:])
            epochs_done += 1
            if cfg.kl_early_stop:
                epoch_kl = float(
                    mean_across_ranks(
                        torch.stack([h["kl"] for h in history[epoch_start:]]).mean(),
                        world_size=self.world_size,
                    )
                )
                if epoch_kl > 1.5 * cfg.kl_target:
                    break
        stats = {k: float(torch.stack([h[k] for h in history]).mean()) for k in history[0]} if history else {}
        stats["lr"] = lr
        stats["epochs"] = float(epochs_done)
        stats["explained_variance"] = explained_variance(
            batch[Columns.VF_PREDS], batch[Columns.VALUE_TARGETS]
        )
        if self.kl_coeff > 0.0:  # adaptive KL penalty, as in the paper's section 4 and RLlib
            kl = float(mean_across_ranks(torch.tensor(stats["kl"]), world_size=self.world_size))
            if kl > 2.0 * cfg.kl_target:
                self.kl_coeff *= 1.5
            elif kl < 0.5 * cfg.kl_target:
                self.kl_coeff *= 0.5
            stats["kl_coeff"] = self.kl_coeff
        return stats

    def _add_epoch_statistics(self, steps: list[dict[str, torch.Tensor]]) -> None:
        """Each step's statistics-only terms, from what `ppo_loss` deferred during the epoch."""
        deferred, self._deferred = self._deferred, None
        if not deferred or len(deferred) != len(steps):  # a custom loss() that did not go through ppo_loss
            return
        stats = ppo_statistics(self.dist, deferred, clip_param=self.config.clip_param, skip=steps[0].keys())
        for i, step in enumerate(steps):
            step.update({k: v[i] for k, v in stats.items()})

    def get_state(self) -> dict[str, Any]:
        return {**super().get_state(), "kl_coeff": self.kl_coeff}

    def set_state(self, state: Mapping[str, Any]) -> None:
        super().set_state(state)
        self.kl_coeff = float(state.get("kl_coeff", self.kl_coeff))


def explained_variance(pred: np.ndarray, target: np.ndarray) -> float:
    var = float(np.var(target))
    return float("nan") if var == 0.0 else 1.0 - float(np.var(target - pred)) / var


# ---------------------------------------------------------------------------------------------------
# Training step
# ---------------------------------------------------------------------------------------------------


class PPO(SyncSamplingAlgorithm[PPOConfig]):
    """The training step (sample → `estimate_returns` → `learn` → broadcast) is
    kuberl.algorithms.families.sync's, shared with A2C and PG."""

    name = "PPO"
    learner: PPOLearner
    # What setup() builds: a custom PPO names its PPOLearner subclass here (docs/custom-algorithms.md).
    learner_class: ClassVar[type[PPOLearner]] = PPOLearner
    returns_timer = "gae"

    def rollout_length(self) -> int:
        res = self.spec.resources
        total_envs = max(res.env_runners, 1) * res.envs_per_runner
        length = max(1, math.ceil(self.config.train_batch_size / total_envs))
        model = self.config.model
        if model.use_lstm:  # whole sequences: round up to a multiple of the sequence length
            seq = sequence_length(length, model.max_seq_len)
            length = math.ceil(length / seq) * seq
        return length

    def runner_overrides(self) -> dict[str, Any]:
        return runner_overrides(self.config.model)

    def setup(self) -> None:
        module = build_model(self.obs_space, self.action_space, self.config.model)
        device = driver_learner_device(self.spec.resources)
        self.recurrent = is_recurrent(module)
        self.learner = self.learner_class(module, action_distribution(self.action_space), self.config, device)
        self.torch_gen = torch.Generator().manual_seed(self.spec.seed or 0)

    def estimate_returns(self, batch: SampleBatch) -> SampleBatch:
        """GAE on the full rollouts, then the training batch: flat steps, or whole sequences."""
        cfg = self.config
        adv, targets = gae(
            batch[Columns.REWARDS],
            batch[Columns.VF_PREDS],
            batch[Columns.NEXT_VF_PREDS],
            batch[Columns.TERMINATEDS],
            batch[Columns.TRUNCATEDS],
            gamma=cfg.gamma,
            lambda_=cfg.lambda_,
        )
        batch[Columns.ADVANTAGES] = adv
        batch[Columns.VALUE_TARGETS] = targets
        if self.recurrent:
            batch[RecurrentColumns.RESETS] = episode_starts(
                batch[Columns.TERMINATEDS], batch[Columns.TRUNCATEDS]
            )
        for col in (Columns.TERMINATEDS, Columns.TRUNCATEDS, Columns.NEXT_VF_PREDS):
            batch.pop(col)
        if self.recurrent:
            T = batch.shape[0]
            return SampleBatch(chunk_sequences(batch, sequence_length(T, cfg.model.max_seq_len)))
        return batch.flatten()

    def learn(self, train: SampleBatch) -> dict[str, float]:
        stats: dict[str, float] = self.learner.update(
            train, timesteps=self.timesteps, generator=self.torch_gen
        )
        return stats
