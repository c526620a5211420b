"""Preflight checks of a job against this machine, before anything is written: each failure is a
SpecError naming the field, so `kuberl run` prints one message and exits 2 instead of a traceback from
deep inside the trainer (or, worse, after the run directory was written)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import gymnasium as gym

from kuberl.spec import RLTrainingJob, SpecError


def check_custom_model(job: RLTrainingJob, spaces: tuple[gym.Space[Any], gym.Space[Any]] | None) -> None:
    """`config.model.customModel` imports, is a torch module class, and builds for the env's spaces —
    the same construction every runner and learner does later."""
    model = getattr(job.spec.config, "model", None)
    path = getattr(model, "custom_model", None)
    if model is None or not path:
        return
    import torch

    from kuberl.core.env_factory import EnvError, import_object

    field = "spec.config.model.customModel"
    try:
        cls = import_object(path)
    except EnvError as exc:
        raise SpecError([(field, str(exc))]) from None
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise SpecError([(field, f"{path!r} is not a torch.nn.Module class (it is {type(cls).__name__})")])
    if spaces is None:
        return
    try:
        cls(*spaces, dict(model.custom_model_config))
    except Exception as exc:
        raise SpecError(
            [(field, f"{path}(observation_space, action_space, customModelConfig) failed: {exc!r}")]
        ) from None


def check_callbacks(job: RLTrainingJob) -> None:
    """`config.callbacks` imports, subclasses kuberl.DefaultCallbacks and builds with no arguments —
    what every runner does later, where a failure would cost a Ray actor's start."""
    path = getattr(job.spec.config, "callbacks", None)
    if not path:
        return
    from kuberl.core.callbacks import load_callbacks
    from kuberl.core.env_factory import EnvError

    try:
        load_callbacks(path)
    except (EnvError, TypeError) as exc:
        raise SpecError([("spec.config.callbacks", str(exc))]) from None
    except Exception as exc:
        raise SpecError([("spec.config.callbacks", f"{path}() failed: {exc!r}")]) from None


def check_devices(job: RLTrainingJob) -> None:
    """GPUs asked for must exist where the learner runs. Without RAY_ADDRESS the learner runs on this
    machine; on a Ray cluster the GPU nodes are the cluster's business (Ray schedules onto them)."""
    resources = job.spec.resources
    if resources.gpus_per_learner <= 0 or os.environ.get("RAY_ADDRESS"):
        return
    import torch

    if not torch.cuda.is_available():
        raise SpecError(
            [
                (
                    "spec.resources.gpusPerLearner",
                    f"{resources.gpus_per_learner:g} GPU(s) asked for, but this machine has no CUDA device "
                    "torch can use; set it to 0 to train on the CPU",
                )
            ]
        )


def make_dirs(path: Path, *, field: str) -> list[Path]:
    """Create `path` and its missing parents; return the directories this call created (deepest last),
    so a later failure can remove exactly those."""
    missing: list[Path] = []
    p = path.absolute()
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    if not p.is_dir():
        raise SpecError([(field, f"cannot create {path}: {p} exists and is not a directory")])
    created: list[Path] = []
    for d in reversed(missing):
        try:
            d.mkdir()
        except OSError as exc:
            remove_dirs(created)
            raise SpecError([(field, f"cannot create {path}: {exc.strerror or exc}")]) from None
        created.append(d)
    if not os.access(path, os.W_OK | os.X_OK):
        raise SpecError([(field, f"{path} is not writable")])
    return created


def remove_dirs(created: list[Path]) -> None:
    """Undo make_dirs: remove the directories it created, if they are still empty."""
    for d in reversed(created):
        try:
            d.rmdir()
        except OSError:
            return


def check_action_spaces(job: RLTrainingJob, action_spaces: list[gym.Space[Any]]) -> None:
    """Every action space the env has (each agent's, multi-agent) is one the algorithm can act in
    (its config's `capabilities.action_spaces`), and one the features the job asks for can carry."""
    from kuberl.core.action_spaces import NAMES, action_space_kind, action_space_problem

    kinds = job.spec.config.capabilities.action_spaces
    for space in action_spaces:
        problem = action_space_problem(job.spec.algorithm, kinds, space)
        if problem is not None:
            raise SpecError([("spec.env", f"{job.spec.env} {problem}")])
        kind = action_space_kind(space)
        # The policy server's JSON and the offline Parquet schema speak these kinds only.
        assert kind is not None
        if job.spec.external.enabled and kind not in _EXTERNAL_KINDS:
            reason = "spec.external serves Discrete, Box and MultiDiscrete action spaces only"
            raise SpecError(
                [("spec.env", f"{job.spec.env} has a {NAMES[kind]} action space ({space}); {reason}")]
            )
        if job.spec.output is not None and kind not in _RECORDED_KINDS:
            reason = "spec.output records Discrete and Box action spaces only"
            raise SpecError(
                [("spec.env", f"{job.spec.env} has a {NAMES[kind]} action space ({space}); {reason}")]
            )


_EXTERNAL_KINDS = ("discrete", "box", "multi_discrete")
_RECORDED_KINDS = ("discrete", "box")


def check_action_masks(job: RLTrainingJob, agent_spaces: list[tuple[gym.Space[Any], gym.Space[Any]]]) -> None:
    """A multi-agent observation's `action_mask` has one entry per action of a Discrete space: the masked
    models (kuberl.core.multi_agent.masking, DQN's, SAC's, QMIX's and VDN's) cannot mask any other kind."""
    from kuberl.core.action_spaces import NAMES, action_space_kind
    from kuberl.core.multi_agent.masking import MASK_KEY, mask_slice

    if job.spec.multi_agent is None and not job.spec.config.capabilities.joint_agents:
        return
    for obs_space, action_space in agent_spaces:
        kind = action_space_kind(action_space)
        if mask_slice(obs_space) is not None and kind != "discrete":
            name = NAMES[kind] if kind is not None else str(action_space)
            raise SpecError(
                [
                    (
                        "spec.env",
                        f"{job.spec.env} has an {MASK_KEY!r} in its observations and a {name} action space; "
                        "action masks apply to Discrete action spaces only",
                    )
                ]
            )
