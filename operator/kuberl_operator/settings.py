"""Operator settings read from the environment (shared by the entry point and the startup hook)."""

from __future__ import annotations


def namespaces_from_env(value: str | None) -> list[str] | None:
    """KUBERL_NAMESPACES: a comma list of namespaces, or empty/"all"/"*" for cluster-wide (None)."""
    if not value or value.strip() in ("all", "*"):
        return None
    return [ns.strip() for ns in value.split(",") if ns.strip()]
