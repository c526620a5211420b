"""Custom algorithms: `spec.algorithm: "my_pkg.algos:MyPPO"` (docs/custom-algorithms.md).

The class at that import path is a `kuberl.algorithms.base.Algorithm` subclass whose `config_class`
names its config model: a subclass of a built-in config (e.g. `class MyPPOConfig(PPOConfig)` adding a
field), whose `capabilities` say what the job may combine it with, exactly as for the built-ins.

Validation resolves the class by importing it (`kuberl run`, `render`, the trainer in the pod). The
operator never imports torch or user code, so it parses with `deferred_custom_algorithms()`: a custom
job's `config` is then kept as written (`DeferredConfig`) and its cross-field rules are left to the
trainer, which validates the whole job when the pod starts and exits 2 naming the field.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeGuard

from pydantic import ConfigDict

from kuberl.spec.algorithms.base import AlgorithmConfigBase
from kuberl.spec.base import WireModel

# `module.sub:Class`, as for custom envs (`env: pkg.mod:make`) and custom models; ASCII, so that the CRD's
# CEL rule (RE2) says exactly the same.
CUSTOM_ALGORITHM_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$"
_CUSTOM = re.compile(CUSTOM_ALGORITHM_PATTERN)
# Whether validation may import a custom algorithm's module; a context variable, not a global, so the
# operator's deferral covers exactly the parse it wraps (and nested ones: tune trials' specs).
_IMPORTING: ContextVar[bool] = ContextVar("kuberl_import_custom_algorithms", default=True)


def is_custom(algorithm: object) -> TypeGuard[str]:
    """Whether `algorithm` names a class by import path rather than a built-in algorithm."""
    return isinstance(algorithm, str) and _CUSTOM.match(algorithm) is not None


def importing() -> bool:
    return _IMPORTING.get()


@contextmanager
def deferred_custom_algorithms() -> Iterator[None]:
    """Parse without importing custom algorithms (the operator: no torch, no user code)."""
    token = _IMPORTING.set(False)
    try:
        yield
    finally:
        _IMPORTING.reset(token)


class DeferredConfig(WireModel):
    """A custom algorithm's `config` as the user wrote it, where its model cannot be imported (the
    operator): the trainer validates it against the algorithm's own model when the pod starts."""

    model_config = ConfigDict(extra="allow")


def _is_algorithm(cls: type) -> bool:
    # By name: spec never imports kuberl.algorithms (torch); a subclass has already imported it.
    return any(c.__module__ == "kuberl.algorithms.base" and c.__name__ == "Algorithm" for c in cls.__mro__)


def algorithm_class(path: str) -> type:
    """The Algorithm class at `path` ("pkg.mod:Class"). Raises ValueError saying why it cannot be used."""
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # the user's module: any import-time failure is the reason to report
        raise ValueError(f"cannot import {module_name!r}: {type(exc).__name__}: {exc}") from None
    cls = getattr(module, attr, None)
    if cls is None:
        raise ValueError(f"module {module_name!r} has no attribute {attr!r}")
    if not isinstance(cls, type) or not _is_algorithm(cls):
        raise ValueError(f"{path} is not a kuberl.algorithms.base.Algorithm subclass")
    return cls


def config_model(path: str) -> type[AlgorithmConfigBase]:
    """The config model a custom algorithm names in its `config_class` attribute."""
    cls = algorithm_class(path)
    model: Any = getattr(cls, "config_class", None)
    if not (
        isinstance(model, type)
        and issubclass(model, AlgorithmConfigBase)
        and "algorithm" in model.model_fields
    ):
        raise ValueError(
            f"{path}.config_class must name its config model: a subclass of a built-in algorithm's config "
            "(e.g. class MyPPOConfig(PPOConfig)), not "
            f"{getattr(model, '__name__', repr(model))}"
        )
    return model


def validate_config(path: str, value: Any) -> AlgorithmConfigBase | DeferredConfig:
    """`config` of the custom algorithm `path`, validated against its model (or deferred)."""
    if isinstance(value, AlgorithmConfigBase | DeferredConfig):
        return value
    raw = {k: v for k, v in (value or {}).items() if k != "algorithm"} if isinstance(value, dict) else value
    if not importing():
        return DeferredConfig.model_validate(raw)
    return config_model(path).model_validate(raw)
