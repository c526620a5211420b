"""Optimizer steps for the learners' hot loop, without `torch.optim.Optimizer.step()`'s per-call wrapper.

`Adam.step()` is `torch.optim.adam.adam` (torch's documented functional form of the update) behind
three wrappers: the profiler's `record_function` and step hooks, `_use_grad_for_differentiable`, and
`_init_group`, which re-collects every parameter's state on each call. With minibatch-64 PPO those cost
about three times the fused update kernel itself.

`OptimizerStep` calls the same `adam()` with the same arguments `Adam.step()` passes, on state lists it
collects once (through Adam's own `_init_group`, so the state is created exactly as torch creates it)
and again only when the optimizer's state or the set of parameters with gradients changes; RMSprop
(A2C's and A3C's default) likewise through `rmsprop()`. The result is bit-identical to the optimizer's
`step()` (tests/unit/test_optim_step.py). Anything else (another optimizer, amsgrad, capturable or
differentiable, registered step hooks, a torch whose private `_init_group` no longer fits) takes the
optimizer's own `step()`. `step()`'s wrapper also imports `torch._dynamo` (below) on its first call.

`Adam` and `RMSprop` are torch's classes without the `torch._disable_dynamo` wrappers on their
bookkeeping methods (`add_param_group`, `zero_grad`, `state_dict`, `load_state_dict`): each such wrapper
imports `torch._dynamo` on its first call (1.2–1.7 s on a quiet 2-core machine, a third of the quick
start before its first sample), only to keep a `torch.compile` trace out of them; kuberl never compiles
its learners.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.optim import optimizer as optim_module  # where the global step hooks live
from torch.optim.adam import adam
from torch.optim.rmsprop import rmsprop


def _eager(method: Any) -> Any:
    """`method` without torch's `_disable_dynamo` wrapper, if that is what wraps it (recognised by the
    wrapper's code object, so another decorator or a torch without the wrapper leaves it as it is)."""
    if getattr(method, "__code__", None) is _DISABLE_DYNAMO_CODE:
        return method.__wrapped__
    return method


_DISABLE_DYNAMO_CODE = torch._disable_dynamo(lambda: None).__code__


class _EagerBookkeeping:
    """Torch's optimizer bookkeeping methods minus the wrapper that imports torch._dynamo (see the module
    docstring); listed first in a subclass's bases, so they replace `torch.optim.Optimizer`'s."""

    add_param_group = _eager(torch.optim.Optimizer.add_param_group)
    zero_grad = _eager(torch.optim.Optimizer.zero_grad)
    state_dict = _eager(torch.optim.Optimizer.state_dict)
    load_state_dict = _eager(torch.optim.Optimizer.load_state_dict)


class Adam(_EagerBookkeeping, torch.optim.Adam):
    """`torch.optim.Adam` whose construction, `zero_grad`, `state_dict` and `load_state_dict` are torch's
    own methods minus the wrapper that imports `torch._dynamo`. The state and its `state_dict` are
    torch's: checkpoints load into either class."""


class RMSprop(_EagerBookkeeping, torch.optim.RMSprop):
    """`torch.optim.RMSprop`, likewise; state and checkpoints are torch's."""


def _has_step_hooks(optimizer: torch.optim.Optimizer) -> bool:
    return bool(
        getattr(optimizer, "_optimizer_step_pre_hooks", None)
        or getattr(optimizer, "_optimizer_step_post_hooks", None)
        or getattr(optim_module, "_global_optimizer_pre_hooks", None)
        or getattr(optim_module, "_global_optimizer_post_hooks", None)
    )


def _collector(optimizer: torch.optim.Optimizer) -> Callable[[Any, dict[str, Any]], _Collected] | None:
    """How `optimizer`'s step() can be taken without its wrapper: an Adam or RMSprop whose step() is
    exactly torch's functional update over its parameters with gradients. None otherwise."""
    kind = type(optimizer)
    if any(g.get("capturable") or g.get("differentiable") for g in optimizer.param_groups):
        return None
    if kind in (torch.optim.Adam, Adam) and not any(g["amsgrad"] for g in optimizer.param_groups):
        return _AdamLists
    if kind in (torch.optim.RMSprop, RMSprop):
        return _RMSpropLists
    return None


class _Collected:
    """One param group's parameters that had gradients when collected and their state tensors (the
    optimizer's own, updated in place), collected by the optimizer's own `_init_group`, so the state is
    created exactly as torch creates it."""

    def __init__(self) -> None:
        self.params: list[torch.Tensor] = []
        self.steps: list[torch.Tensor] = []

    def grads(self, group: dict[str, Any]) -> list[torch.Tensor] | None:
        """The current gradients, or None when the parameters with gradients are not the collected ones."""
        grads = [p.grad for p in self.params]
        n_with_grad = sum(p.grad is not None for p in group["params"])
        if n_with_grad != len(grads) or any(g is None for g in grads):
            return None
        return grads  # type: ignore[return-value]

    def update(
        self, optimizer: torch.optim.Optimizer, group: dict[str, Any], grads: list[torch.Tensor]
    ) -> None:
        raise NotImplementedError


class _AdamLists(_Collected):
    """The arguments of `adam()` that `Adam.step()` passes, for one param group."""

    def __init__(self, optimizer: torch.optim.Adam, group: dict[str, Any]) -> None:
        super().__init__()
        grads: list[torch.Tensor] = []
        self.exp_avgs: list[torch.Tensor] = []
        self.exp_avg_sqs: list[torch.Tensor] = []
        # Adam's own collection and lazy state initialisation (step's dtype and device depend on fused).
        self.has_complex = bool(
            optimizer._init_group(group, self.params, grads, self.exp_avgs, self.exp_avg_sqs, [], self.steps)
        )
        self.step_counts = self._pack_steps(optimizer, group) if group["fused"] else None

    def _pack_steps(self, optimizer: torch.optim.Adam, group: dict[str, Any]) -> torch.Tensor | None:
        """Fused Adam on one device and dtype: each parameter's step count becomes a view of one
        tensor, so that the increment every step makes is one op instead of one per parameter (the
        counts are always equal; checkpoints store the same values). None where that does not hold."""
        tensors = [*self.params, *self.exp_avgs, *self.exp_avg_sqs]
        if not self.params or self.has_complex or group["lr"].__class__ is not float:
            return None
        if any(t.device != self.params[0].device or t.dtype != self.params[0].dtype for t in tensors):
            return None
        if any(
            s.dim() != 0 or s.device != self.steps[0].device or s.dtype != self.steps[0].dtype
            for s in self.steps
        ):
            return None
        counts = torch.stack(self.steps)
        self.steps = list(counts.unbind())
        for param, count in zip(self.params, self.steps, strict=True):
            optimizer.state[param]["step"] = count
        return counts

    def update(
        self, optimizer: torch.optim.Optimizer, group: dict[str, Any], grads: list[torch.Tensor]
    ) -> None:
        grad_scale, found_inf = getattr(optimizer, "grad_scale", None), getattr(optimizer, "found_inf", None)
        beta1, beta2 = group["betas"]
        if self.step_counts is not None and grad_scale is None and found_inf is None:
            # What adam() runs for fused Adam on one device (torch.optim.adam._fused_adam), minus
            # its grouping by device and dtype, and with the step counts incremented in one op.
            self.step_counts.add_(1)
            fused = torch._fused_adamw_ if group["decoupled_weight_decay"] else torch._fused_adam_
            fused(
                self.params,
                grads,
                self.exp_avgs,
                self.exp_avg_sqs,
                [],
                self.steps,
                amsgrad=False,
                lr=group["lr"],
                beta1=float(beta1),
                beta2=float(beta2),
                weight_decay=group["weight_decay"],
                eps=group["eps"],
                maximize=group["maximize"],
                grad_scale=None,
                found_inf=None,
            )
            return
        adam(
            self.params,
            grads,
            self.exp_avgs,
            self.exp_avg_sqs,
            [],
            self.steps,
            amsgrad=False,
            has_complex=self.has_complex,
            beta1=beta1,
            beta2=beta2,
            lr=group["lr"],
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            maximize=group["maximize"],
            foreach=group["foreach"],
            capturable=False,
            differentiable=False,
            fused=group["fused"],
            grad_scale=grad_scale,
            found_inf=found_inf,
            decoupled_weight_decay=group["decoupled_weight_decay"],
        )


class _RMSpropLists(_Collected):
    """The arguments of `rmsprop()` that `RMSprop.step()` passes, for one param group."""

    def __init__(self, optimizer: torch.optim.RMSprop, group: dict[str, Any]) -> None:
        super().__init__()
        grads: list[torch.Tensor] = []
        self.square_avgs: list[torch.Tensor] = []
        self.momentum_buffers: list[torch.Tensor] = []
        self.grad_avgs: list[torch.Tensor] = []
        self.has_complex = bool(
            optimizer._init_group(
                group, self.params, grads, self.square_avgs, self.momentum_buffers, self.grad_avgs, self.steps
            )
        )

    def update(
        self, optimizer: torch.optim.Optimizer, group: dict[str, Any], grads: list[torch.Tensor]
    ) -> None:
        rmsprop(
            self.params,
            grads,
            self.square_avgs,
            self.grad_avgs,
            self.momentum_buffers,
            self.steps,
            lr=group["lr"],
            alpha=group["alpha"],
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            momentum=group["momentum"],
            centered=group["centered"],
            foreach=group["foreach"],
            maximize=group["maximize"],
            differentiable=False,
            capturable=False,
            has_complex=self.has_complex,
        )


class OptimizerStep:
    """`zero_grad()` and `step()` of one optimizer; see the module docstring."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self._lists: list[_Collected] | None = None
        self._plain = True  # False once this torch's optimizer internals turned out not to fit
        # load_state_dict() (a checkpoint restore, Learner.to_device) replaces the state tensors.
        optimizer.register_load_state_dict_post_hook(self._forget)

    def _forget(self, optimizer: torch.optim.Optimizer) -> None:
        self._lists = None

    def zero_grad(self) -> None:
        """`optimizer.zero_grad(set_to_none=True)`."""
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                p.grad = None

    def step(self) -> None:
        opt = self.optimizer
        kind = _collector(opt) if self._plain else None
        if kind is None or _has_step_hooks(opt):
            opt.step()
            return
        if self._lists is None or len(self._lists) != len(opt.param_groups):
            try:
                self._lists = [kind(opt, g) for g in opt.param_groups]
            except (AttributeError, TypeError):  # a torch whose _init_group differs: its own step()
                self._plain = False
                opt.step()
                return
        with torch.no_grad():  # as the optimizer's step(): the update is not part of any graph
            for i, group in enumerate(opt.param_groups):
                lists = self._lists[i]
                grads = lists.grads(group)
                if grads is None:  # another set of parameters has gradients this time: collect again
                    lists = self._lists[i] = kind(opt, group)
                    grads = [p.grad for p in lists.params]  # type: ignore[misc]
                lists.update(opt, group, grads)


_FOREACH_DEVICES = ("cpu", "cuda")


def clip_grad_norm(params: Sequence[torch.Tensor], max_norm: float | None) -> torch.Tensor:
    """The global L2 norm of the gradients of `params` (all of which have one), returned as a tensor,
    and with `max_norm` their in-place clipping to it: `torch.nn.utils.clip_grad_norm_` (or, without
    `max_norm`, `get_total_norm`), bit for bit (tests/unit/test_optim_step.py). Where every gradient is a
    plain tensor of one dtype on one CPU or CUDA device it runs the four ops torch's foreach path runs
    there, without its wrappers (a no-grad decorator per function, grouping the tensors by device and
    dtype twice, a `.to()` per norm), which cost twice the ops themselves for a minibatch-64 PPO
    step's twelve small tensors. Anything else goes through torch's functions."""
    grads = [p.grad for p in params]
    first = grads[0] if grads else None
    if first is None or not _one_foreach_group(grads, first):
        if max_norm is None:
            return torch.nn.utils.get_total_norm([g for g in grads if g is not None]).detach()
        return torch.nn.utils.clip_grad_norm_(params, max_norm).detach()
    with torch.no_grad():
        total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads, 2.0)), 2.0)  # type: ignore[arg-type]
        if max_norm is not None:
            coef = torch.clamp(float(max_norm) / (total + 1e-6), max=1.0)
            torch._foreach_mul_(grads, coef)  # type: ignore[arg-type]
    return total


def _one_foreach_group(grads: list[torch.Tensor | None], first: torch.Tensor) -> bool:
    device, dtype = first.device, first.dtype
    return device.type in _FOREACH_DEVICES and all(
        type(g) is torch.Tensor and g.device == device and g.dtype == dtype and g.layout == torch.strided
        for g in grads
    )
