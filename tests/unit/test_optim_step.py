"""kuberl.core.optim.OptimizerStep: Adam's and RMSprop's updates without Optimizer.step()'s wrapper are
bit-identical to their `step()` — through state creation, lr changes, a checkpoint restore mid-run and steps where a
parameter has no gradient — and falls back to the optimizer's own step() where it does not apply."""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Callable

import pytest
import torch
from torch import nn

from kuberl.algorithms.families.actor_critic import make_optimizer
from kuberl.core.learner import Learner, make_adam
from kuberl.core.optim import OptimizerStep, RMSprop, clip_grad_norm


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 3))


def _grads(net: nn.Module, seed: int, *, skip_last: bool) -> None:
    """Deterministic gradients; with skip_last the output layer gets none (as a frozen head would)."""
    gen = torch.Generator().manual_seed(seed)
    params = list(net.parameters())
    for i, p in enumerate(params):
        grad = torch.randn(p.shape, generator=gen).to(p.dtype)
        p.grad = None if skip_last and i >= len(params) - 2 else grad


def _same(a: nn.Module, b: nn.Module, opt_a: torch.optim.Optimizer, opt_b: torch.optim.Optimizer) -> None:
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    sa, sb = opt_a.state_dict()["state"], opt_b.state_dict()["state"]
    assert sa.keys() == sb.keys()
    for k in sa:
        for name in sa[k]:
            assert torch.equal(sa[k][name], sb[k][name]), (k, name)
            assert sa[k][name].dtype == sb[k][name].dtype


OPTIMIZERS: dict[str, Callable[[nn.Module], torch.optim.Optimizer]] = {
    "fused adam (make_adam)": lambda m: make_adam(m.parameters(), lr=3e-4, eps=1e-5),
    "default adam": lambda m: torch.optim.Adam(m.parameters(), lr=7e-4, eps=1e-5),
    "adam with weight decay": lambda m: torch.optim.Adam(m.parameters(), lr=1e-3, weight_decay=0.1),
    "amsgrad (falls back)": lambda m: torch.optim.Adam(m.parameters(), lr=1e-3, amsgrad=True),
    "rmsprop": lambda m: torch.optim.RMSprop(m.parameters(), lr=1e-3, alpha=0.99, eps=1e-5),
    "rmsprop centered with momentum": lambda m: torch.optim.RMSprop(
        m.parameters(), lr=1e-3, momentum=0.9, centered=True, weight_decay=0.01
    ),
    "sgd (falls back)": lambda m: torch.optim.SGD(m.parameters(), lr=1e-2, momentum=0.9),
}


@pytest.mark.parametrize("make", OPTIMIZERS.values(), ids=OPTIMIZERS.keys())
def test_steps_are_bit_identical_to_optimizer_step(
    make: Callable[[nn.Module], torch.optim.Optimizer],
) -> None:
    ref, fast = _net(), _net()
    opt_ref, opt_fast = make(ref), make(fast)
    stepper = OptimizerStep(opt_fast)
    for i in range(12):
        if i == 5:  # an lr schedule's change, as Learner.update_lr makes it
            for opt in (opt_ref, opt_fast):
                for g in opt.param_groups:
                    g["lr"] *= 0.5
        if i == 8:  # a checkpoint restore replaces the state tensors the stepper collected
            saved = copy.deepcopy(opt_ref.state_dict())
            opt_ref.load_state_dict(copy.deepcopy(saved))
            opt_fast.load_state_dict(copy.deepcopy(saved))
        skip = i in (2, 3)  # some steps leave a layer without gradients
        _grads(ref, i, skip_last=skip)
        _grads(fast, i, skip_last=skip)
        opt_ref.step()
        stepper.step()
        _same(ref, fast, opt_ref, opt_fast)
        stepper.zero_grad()
        assert all(p.grad is None for p in fast.parameters())


def test_kuberl_adam_steps_and_checkpoints_as_torch_adam() -> None:
    """make_adam's kuberl.core.optim.Adam (torch's Adam minus the wrappers that import torch._dynamo) is a
    torch.optim.Adam whose steps are bit-identical to torch's and whose state_dict is torch's, so a
    checkpoint written by either class restores into the other."""
    ref, mine = _net(), _net()
    opt_ref = torch.optim.Adam(ref.parameters(), lr=3e-4, eps=1e-5, fused=True)
    opt_mine = make_adam(mine.parameters(), lr=3e-4, eps=1e-5)
    assert isinstance(opt_mine, torch.optim.Adam)
    assert type(opt_mine) is not torch.optim.Adam
    stepper = OptimizerStep(opt_mine)
    for i in range(8):
        if i == 4:  # each restores the other's checkpoint
            saved_ref, saved_mine = copy.deepcopy(opt_ref.state_dict()), copy.deepcopy(opt_mine.state_dict())
            opt_ref.load_state_dict(saved_mine)
            opt_mine.load_state_dict(saved_ref)
        _grads(ref, i, skip_last=False)
        _grads(mine, i, skip_last=False)
        opt_ref.step()
        stepper.step()
        _same(ref, mine, opt_ref, opt_mine)
        opt_mine.zero_grad()
        assert all(p.grad is None for p in mine.parameters())
    assert opt_ref.state_dict()["param_groups"] == opt_mine.state_dict()["param_groups"]
    assert opt_ref.state_dict()["state"].keys() == opt_mine.state_dict()["state"].keys()


@pytest.mark.parametrize("centered", [False, True], ids=["plain", "centered with momentum"])
def test_a2c_rmsprop_is_torchs_per_tensor_rmsprop_bit_for_bit(centered: bool) -> None:
    """A2C's RMSprop (kuberl.core.optim.RMSprop with torch's foreach update, stepped by OptimizerStep)
    gives exactly the parameters and state of torch's default RMSprop (its per-tensor loop on CPU),
    and their checkpoints restore into each other."""
    extra = {"momentum": 0.9, "centered": True} if centered else {}
    ref, mine = _net(), _net()
    opt_ref = torch.optim.RMSprop(ref.parameters(), lr=7e-4, alpha=0.99, eps=1e-5, **extra)  # type: ignore[arg-type]
    opt_mine = make_optimizer(mine.parameters(), name="rmsprop", lr=7e-4, eps=1e-5, rmsprop_alpha=0.99)
    if centered:
        for g in opt_mine.param_groups:
            g.update(extra)
    assert isinstance(opt_mine, RMSprop)
    assert opt_mine.param_groups[0]["foreach"] is True
    assert opt_ref.param_groups[0]["foreach"] is None  # torch's per-tensor loop
    stepper = OptimizerStep(opt_mine)
    for i in range(10):
        if i == 6:  # each restores the other's checkpoint (foreach is a param-group flag: keep each own)
            saved_ref, saved_mine = copy.deepcopy(opt_ref.state_dict()), copy.deepcopy(opt_mine.state_dict())
            opt_ref.load_state_dict(saved_mine)
            opt_mine.load_state_dict(saved_ref)
            opt_ref.param_groups[0]["foreach"], opt_mine.param_groups[0]["foreach"] = None, True
        _grads(ref, i, skip_last=i == 3)
        _grads(mine, i, skip_last=i == 3)
        opt_ref.step()
        stepper.step()
        _same(ref, mine, opt_ref, opt_mine)
        stepper.zero_grad()


def test_learner_optimizers_do_not_import_torch_dynamo() -> None:
    """Constructing, stepping, zeroing and checkpointing the learners' optimizers does not import
    torch._dynamo (torch's own classes do, on first use: over a second of every run's start-up)."""
    code = (
        "import sys, torch\n"
        "from torch import nn\n"
        "from kuberl.algorithms.families.actor_critic import make_optimizer\n"
        "from kuberl.core.learner import make_adam\n"
        "from kuberl.core.optim import Adam, OptimizerStep\n"
        "net = nn.Linear(3, 2)\n"
        "opts = [make_optimizer(net.parameters(), name=n, lr=1e-3, eps=1e-5, rmsprop_alpha=0.99)\n"
        "        for n in ('rmsprop', 'adam')]\n"
        "opts += [make_adam(net.parameters(), lr=1e-3), Adam(net.parameters(), lr=1e-3, fused=True)]\n"
        "for opt in opts:\n"
        "    step = OptimizerStep(opt)\n"
        "    net(torch.ones(4, 3)).sum().backward()\n"
        "    step.step(); step.zero_grad(); opt.zero_grad()\n"
        "    opt.load_state_dict(opt.state_dict())\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr


def test_a_registered_step_hook_still_runs() -> None:
    net = _net()
    opt = make_adam(net.parameters(), lr=1e-3)
    calls: list[int] = []
    opt.register_step_post_hook(lambda *_: calls.append(1))
    _grads(net, 0, skip_last=False)
    OptimizerStep(opt).step()
    assert calls == [1]


def test_learner_step_matches_the_plain_torch_loop() -> None:
    """Learner.step (cached parameter list, clip, OptimizerStep) = zero_grad/backward/clip/step in torch."""
    ref, mine = _net(), _net()
    opt_ref = make_adam(ref.parameters(), lr=3e-4, eps=1e-5)
    learner = Learner(mine, lr=3e-4, grad_clip=0.5, device=torch.device("cpu"))
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(1))
    for _ in range(5):
        opt_ref.zero_grad(set_to_none=True)
        ref(x).pow(2).mean().backward()
        norm_ref = nn.utils.clip_grad_norm_(list(ref.parameters()), 0.5)
        opt_ref.step()
        norm = learner.step(mine(x).pow(2).mean())
        assert torch.equal(norm, norm_ref)
    _same(ref, mine, opt_ref, learner.optimizer)


@pytest.mark.parametrize("max_norm", [None, 0.5, 1e6], ids=["norm only", "clipping", "under the limit"])
@pytest.mark.parametrize("dtypes", ["float32", "mixed"], ids=["one group", "mixed dtypes (torch's path)"])
def test_clip_grad_norm_is_torchs_bit_for_bit(max_norm: float | None, dtypes: str) -> None:
    ref, fast = _net(), _net()
    if dtypes == "mixed":  # two device/dtype groups: kuberl's function hands over to torch's
        for net in (ref, fast):
            net[2].double()
    _grads(ref, 3, skip_last=False)
    _grads(fast, 3, skip_last=False)
    params = list(ref.parameters())
    if max_norm is None:
        want = torch.nn.utils.get_total_norm([p.grad for p in params])  # type: ignore[misc]
    else:
        want = torch.nn.utils.clip_grad_norm_(params, max_norm)
    got = clip_grad_norm(list(fast.parameters()), max_norm)
    assert torch.equal(got, want)
    assert got.dtype == want.dtype
    for a, b in zip(ref.parameters(), fast.parameters(), strict=True):
        assert a.grad is not None
        assert b.grad is not None
        assert torch.equal(a.grad, b.grad)
    if max_norm == 0.5:  # the clipping did happen
        assert float(torch.nn.utils.get_total_norm([p.grad for p in fast.parameters()])) == pytest.approx(0.5)


def test_clip_grad_norm_of_no_gradients_is_zero() -> None:
    assert float(clip_grad_norm([], 0.5)) == 0.0
    assert float(clip_grad_norm([], None)) == 0.0
