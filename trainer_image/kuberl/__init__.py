"""kuberl: reinforcement learning at scale, Kubernetes-native.

Heavy modules (torch, ray) load lazily, so `import kuberl` and `kuberl.spec` stay fast and light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from kuberl.algorithms.base import Algorithm
    from kuberl.build import build_algorithm
    from kuberl.core.callbacks import CallbackError, DefaultCallbacks, Episode
    from kuberl.external.client import PolicyClient

_LAZY = {
    "Algorithm": ("kuberl.algorithms.base", "Algorithm"),
    "build_algorithm": ("kuberl.build", "build_algorithm"),
    "PolicyClient": ("kuberl.external.client", "PolicyClient"),
    "DefaultCallbacks": ("kuberl.core.callbacks", "DefaultCallbacks"),
    "Episode": ("kuberl.core.callbacks", "Episode"),
    "CallbackError": ("kuberl.core.callbacks", "CallbackError"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'kuberl' has no attribute {name!r}")


__all__ = [
    "Algorithm",
    "CallbackError",
    "DefaultCallbacks",
    "Episode",
    "PolicyClient",
    "__version__",
    "build_algorithm",
]
