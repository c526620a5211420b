"""Per-algorithm hyperparameter models: the members of the `spec.config` discriminated union.

Each algorithm's model lives in its own module here (not in the algorithm's file) so the operator,
which never imports torch, can validate `config`. Modules are discovered: adding `dqn.py` with a
`DQNConfig(AlgorithmConfigBase)` whose `algorithm` is `Literal["DQN"]` is all it takes to join the
union, the CRD description and the registry; its `capabilities` (kuberl.spec.capabilities) say which
features it supports.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Annotated, Any, Union, get_args

from pydantic import Field

from kuberl.spec.algorithms.base import AlgorithmConfigBase, ModelConfig, ScheduleType
from kuberl.spec.capabilities import Capabilities


def _discover() -> dict[str, type[AlgorithmConfigBase]]:
    found: dict[str, type[AlgorithmConfigBase]] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for obj in vars(module).values():
            if (
                isinstance(obj, type)
                and issubclass(obj, AlgorithmConfigBase)
                and obj is not AlgorithmConfigBase
                and obj.__module__ == module.__name__
                and "algorithm" in obj.model_fields
            ):
                (name,) = get_args(obj.model_fields["algorithm"].annotation)
                found[name] = obj
    return found


CONFIG_MODELS: dict[str, type[AlgorithmConfigBase]] = _discover()
ALGORITHMS: tuple[str, ...] = tuple(CONFIG_MODELS)

# The discriminated union, built from the discovered models. The discriminator `algorithm` is copied
# into `config` from spec.algorithm before validation, so users never write it twice.
AlgorithmConfig: Any = Annotated[Union[tuple(CONFIG_MODELS.values())], Field(discriminator="algorithm")]  # noqa: UP007

from kuberl.spec.algorithms.ppo import PPOConfig  # noqa: E402  (re-export for convenience)


def capabilities() -> dict[str, Capabilities]:
    """Every algorithm's supported features (kuberl.spec.capabilities), by algorithm name."""
    return {name: model.capabilities for name, model in CONFIG_MODELS.items()}


__all__ = [
    "ALGORITHMS",
    "CONFIG_MODELS",
    "AlgorithmConfig",
    "AlgorithmConfigBase",
    "Capabilities",
    "ModelConfig",
    "PPOConfig",
    "ScheduleType",
    "capabilities",
]
