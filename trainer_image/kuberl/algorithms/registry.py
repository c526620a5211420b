"""Algorithm name -> Algorithm class, through the config model's `implementation` (kuberl.spec lists
the algorithms; the trainer imports only the one a job names)."""

from __future__ import annotations

import importlib

from kuberl.algorithms.base import Algorithm


def algorithm_class(name: str) -> type[Algorithm]:
    """The Algorithm named by the config model's `implementation`, imported lazily so one algorithm's
    dependencies never load for another; or a custom one by its `module:Class` (kuberl.spec.custom)."""
    from kuberl.spec.algorithms import CONFIG_MODELS
    from kuberl.spec.custom import algorithm_class as custom_class
    from kuberl.spec.custom import is_custom

    if is_custom(name):
        custom = custom_class(name)
        assert issubclass(custom, Algorithm)
        return custom

    module, _, attr = CONFIG_MODELS[name].implementation.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    assert issubclass(cls, Algorithm)
    return cls
