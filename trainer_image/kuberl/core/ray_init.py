"""Start or join Ray: embedded on a laptop, the existing cluster inside KubeRay."""

from __future__ import annotations

import logging
import os
import sys


def ensure_ray(num_cpus_needed: float) -> None:
    """Join the cluster named by RAY_ADDRESS (KubeRay sets it for RayJob entrypoints), else start an
    embedded instance. The embedded one is given at least as many CPUs as the runners reserve, so a
    job asking for more runners than cores oversubscribes instead of waiting forever."""
    address = os.environ.get("RAY_ADDRESS")
    if not address and "ray" not in sys.modules:
        # Ray's own default for a new local instance (token authentication), said explicitly: left
        # unset, Ray warns on every start that it chose it. It must be set before `import ray`, which
        # caches the mode: a driver that cached "disabled" cannot talk to the token-mode GCS it starts.
        # (A process that imported Ray already gets Ray's default, with its warning.)
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
        return
    cpus = max(float(os.cpu_count() or 1), float(num_cpus_needed))
    # Workers must import custom envs and models the way the driver does (`module:factory`).
    paths = [os.getcwd(), *[p for p in sys.path if p]]
    ray.init(
        num_cpus=int(cpus + 0.999),
        include_dashboard=False,
        logging_level=logging.WARNING,
        runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}},
    )
