"""Learner: owns the torch module and its optimizer, on CPU or a GPU.

Algorithms subclass it only to add their loss and update loop; device placement, gradient
clipping, the learning-rate schedule and (de)serialisation live here once. A learner is also one
rank of a data-parallel group (kuberl.core.learner_group): `distribute()` wraps its module in
DistributedDataParallel, which averages the gradients across ranks during `backward()`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from kuberl.core.models import weights_to_numpy
from kuberl.core.optim import Adam, OptimizerStep, clip_grad_norm
from kuberl.core.schedules import piecewise_linear
from kuberl.spec.common import ResourcesSpec


def select_device(gpus_per_learner: float, *, cpus_per_learner: float = 1.0) -> torch.device:
    if gpus_per_learner <= 0:
        # Small RL networks train fastest on few threads; more only contend with the env runners.
        torch.set_num_threads(max(1, int(cpus_per_learner)))
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError(
            "resources.gpusPerLearner > 0 but CUDA is not available in this process "
            "(install a CUDA build of torch, or set gpusPerLearner: 0)"
        )
    return torch.device("cuda")


def driver_learner_device(resources: ResourcesSpec) -> torch.device:
    """The device of the learner an algorithm builds in the driver: the GPU only when that learner is
    the one that trains (learners: 1). Data-parallel learners train on copies that move to their own
    GPUs (kuberl.core.learner_group), so the driver's stays on CPU and needs no GPU of its own."""
    gpus = resources.gpus_per_learner if resources.learners == 1 else 0.0
    return select_device(gpus, cpus_per_learner=resources.cpus_per_learner)


def state_dicts(owner: object, names: Sequence[str]) -> dict[str, Any]:
    """`state_dict()` of each named module or optimizer attribute of `owner`, keyed by attribute name:
    the checkpoint layout of learners that hold several networks and optimizers (SAC, CQL, TD3, DDPG)."""
    return {name: getattr(owner, name).state_dict() for name in names}


def load_state_dicts(owner: object, state: Mapping[str, Any], names: Sequence[str]) -> None:
    """The inverse of state_dicts() (optimizers through load_optimizer_state)."""
    for name in names:
        part = getattr(owner, name)
        if isinstance(part, torch.optim.Optimizer):
            load_optimizer_state(part, state[name])
        else:
            part.load_state_dict(state[name])


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: Mapping[str, Any]) -> None:
    """Restore an optimizer's moments and step counts from a checkpoint, keeping the hyperparameters it
    was built with (lr, betas, eps…): on resume those come from the job as it is now, so an edited
    `config.lr` takes effect instead of being silently replaced by the checkpoint's."""
    configured = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    optimizer.load_state_dict(dict(state))
    for group, hyper in zip(optimizer.param_groups, configured, strict=True):
        group.update(hyper)


def normalize_advantages(adv: torch.Tensor, *, world_size: int = 1) -> torch.Tensor:
    """(A − mean) / (std + 1e-8) over the minibatch. With data-parallel learners a rank holds
    1/world_size of the minibatch, so the moments are taken over all ranks' parts (gathered in rank
    order): N learners then normalise exactly as one learner would on the whole minibatch."""
    if world_size <= 1:
        return (adv - adv.mean()) / (adv.std() + 1e-8)
    parts = [torch.empty_like(adv) for _ in range(world_size)]
    dist.all_gather(parts, adv.detach().contiguous())
    full = torch.cat(parts)
    return (adv - full.mean()) / (full.std() + 1e-8)


def mean_across_ranks(value: torch.Tensor, *, world_size: int = 1) -> torch.Tensor:
    """The mean of a statistic over the data-parallel ranks, for decisions every rank must take the
    same way (PPO's KL early stop and adaptive KL weight), or a rank would leave DDP's collectives."""
    if world_size <= 1:
        return value
    total = value.detach().clone()
    dist.all_reduce(total)
    return total / world_size


def make_adam(params: Any, *, lr: float, eps: float = 1e-8) -> torch.optim.Adam:
    """Adam with the fused kernel where torch has one for the device. On CPU torch otherwise takes its
    per-tensor loop; fused is ~20% faster per step for the small networks RL uses. kuberl.core.optim.Adam:
    torch's Adam without importing torch._dynamo."""
    params = list(params)
    try:
        return Adam(params, lr=lr, eps=eps, fused=True)
    except (RuntimeError, TypeError):
        return Adam(params, lr=lr, eps=eps, foreach=True)


class Learner:
    """The one learner shape: a device, the trained `module` (the policy network) and its optimizer, a
    gradient step, the learning-rate schedule, weights and checkpoint state. Learners with more networks
    (the off-policy actor-critics' critics and temperature) keep them beside `module` and step them
    through `step(loss, optimizer=..., params=...)`."""

    def __init__(
        self,
        module: nn.Module,
        *,
        lr: float,
        grad_clip: float | None,
        device: torch.device,
        lr_schedule: Sequence[tuple[int, float]] | None = None,
        adam_eps: float = 1e-5,
    ) -> None:
        self.device = device
        self.module = module.to(device)
        self.grad_clip = grad_clip
        self.lr_schedule = lr_schedule
        # eps=1e-5 rather than Adam's 1e-8 by default: the PPO implementation-details study found it more
        # stable; the off-policy actor-critics keep Adam's own 1e-8, as their papers and SB3 do.
        self.optimizer = make_adam(self.module.parameters(), lr=lr, eps=adam_eps)
        self.lr = lr
        # What the loss calls: the module itself (or a subclass's training-pass wrapper of it, such as a
        # recurrent network's SequenceForward), inside DistributedDataParallel once distribute() made this
        # learner one rank of a group. Checkpoints and weights use `module`.
        self.train_module: nn.Module = self.module
        self.world_size = 1
        # Per-step costs kept out of the hot loop: the module's parameter list (rebuilt by
        # `module.parameters()` on every call otherwise) and each optimizer's stepper.
        self._params: tuple[nn.Module, list[nn.Parameter]] | None = None
        self._steppers: dict[int, OptimizerStep] = {}

    # Axis along which a batch may be split into data-parallel shards (whole samples by default;
    # recurrent learners split along sequences).
    shard_axis = 0

    def to_device(self, device: torch.device) -> None:
        """Move the module in place (the optimizer keeps its parameters); reloading the optimizer's
        state casts it to the parameters' device the way torch expects (e.g. Adam's `step`)."""
        optimizer_state = self.optimizer.state_dict()
        self.device = device
        self.module.to(device)
        self.optimizer.load_state_dict(optimizer_state)

    def distribute(self, world_size: int) -> None:
        """Become one rank of a data-parallel group; the default process group must exist. DDP
        broadcasts rank 0's parameters at construction, so every rank starts from the same weights. It
        wraps `train_module`: DDP averages gradients only for passes through the wrapped module's
        `forward()`, so that must be the pass the loss makes."""
        self.world_size = world_size
        device_ids = [self.device.index or 0] if self.device.type == "cuda" else None
        self.train_module = DistributedDataParallel(self.train_module, device_ids=device_ids)

    def grad_sync(self, last: bool) -> contextlib.AbstractContextManager[Any]:
        """Around a backward() of gradient accumulation: DDP all-reduces only on the last one."""
        if last or not isinstance(self.train_module, DistributedDataParallel):
            return contextlib.nullcontext()
        return self.train_module.no_sync()

    def update_lr(self, timesteps: int) -> float:
        if self.lr_schedule:
            self.lr = piecewise_linear(self.lr_schedule, timesteps)
            for group in self.optimizer.param_groups:
                group["lr"] = self.lr
        return self.lr

    def to_tensors(self, batch: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
        # A batch from a Ray actor is a read-only view of the object store, which torch cannot share
        # (it warns, and a write through the tensor would be undefined): copy those, share the rest.
        return {
            k: torch.tensor(v, device=self.device)
            if isinstance(v, np.ndarray) and not v.flags.writeable
            else torch.as_tensor(v, device=self.device)
            for k, v in batch.items()
        }

    def trained_params(self) -> list[nn.Parameter]:
        """`list(self.module.parameters())`, built once per module."""
        if self._params is None or self._params[0] is not self.module:
            self._params = (self.module, list(self.module.parameters()))
        return self._params[1]

    def stepper(self, optimizer: torch.optim.Optimizer) -> OptimizerStep:
        """The `OptimizerStep` of `optimizer` (kuberl.core.optim: Adam's update without step()'s wrapper)."""
        entry = self._steppers.get(id(optimizer))
        if entry is None or entry.optimizer is not optimizer:
            entry = self._steppers[id(optimizer)] = OptimizerStep(optimizer)
        return entry

    def clip_and_step(
        self, optimizer: torch.optim.Optimizer, params: Iterable[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Clip the gradients of `params` (default: `module`'s) to `grad_clip`, then step `optimizer`.
        Returns their global norm before clipping, as a tensor (no host sync)."""
        trained = self.trained_params() if params is None else params
        norm = clip_grad_norm([p for p in trained if p.grad is not None], self.grad_clip)
        self.stepper(optimizer).step()
        return norm

    def step(
        self,
        loss: torch.Tensor,
        *,
        optimizer: torch.optim.Optimizer | None = None,
        params: Iterable[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Backward, clip, optimizer step. Returns the global gradient norm before clipping as a
        tensor, so hot loops avoid a host sync per step. By default it steps `optimizer` over
        `module`; a learner with several networks (actor, critics, temperature) passes the optimizer
        and parameters of the one this loss trains."""
        opt = self.optimizer if optimizer is None else optimizer
        self.stepper(opt).zero_grad()
        loss.backward()
        return self.clip_and_step(opt, params)

    def apply_gradients(self, loss: torch.Tensor) -> float:
        """`step()` returning the gradient norm as a float."""
        return float(self.step(loss))

    def get_weights(self) -> dict[str, np.ndarray]:
        return weights_to_numpy(self.module)

    def shutdown(self) -> None:
        """Release what the learner holds outside this process: nothing for a learner training alone
        (a data-parallel kuberl.core.learner_group.LearnerGroup stops its ranks)."""

    def get_state(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "optimizer": self.optimizer.state_dict(), "lr": self.lr}

    def set_state(self, state: Mapping[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        load_optimizer_state(self.optimizer, state["optimizer"])
        if self.lr_schedule:  # the schedule's value at the checkpoint, until the next update_lr()
            self.lr = float(state.get("lr", self.lr))
            for group in self.optimizer.param_groups:
                group["lr"] = self.lr
