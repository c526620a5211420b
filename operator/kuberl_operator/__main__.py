"""`python -m kuberl_operator`: run the operator, configured by environment variables.

KUBERL_NAMESPACES             comma-separated namespaces to watch, or "all" (default: all)
KUBERL_OPERATOR_METRICS_PORT  the operator's /metrics port (default 8081)
KUBERL_DEFAULT_IMAGE          trainer image for jobs that name none in spec.cluster.image
KUBERL_LIVENESS               kopf's liveness endpoint (default http://0.0.0.0:8082/healthz)
KUBERL_SYNC_INTERVAL          seconds between status passes per job (default 10)
KUBERL_STATUS_URL_TEMPLATE    where /status is read, e.g. http://{service}.{namespace}.svc:{port}
KUBERL_PEERING                set to coordinate several replicas through KopfPeering
"""

from __future__ import annotations

import os

import kopf

from kuberl_operator import handlers  # noqa: F401  (importing registers the kopf handlers)
from kuberl_operator.settings import namespaces_from_env


def main() -> None:
    namespaces = namespaces_from_env(os.environ.get("KUBERL_NAMESPACES"))
    kopf.configure(verbose=bool(os.environ.get("KUBERL_VERBOSE")))
    kopf.run(
        registry=kopf.get_default_registry(),
        clusterwide=namespaces is None,
        namespaces=namespaces or (),
        liveness_endpoint=os.environ.get("KUBERL_LIVENESS", "http://0.0.0.0:8082/healthz"),
    )


if __name__ == "__main__":
    main()
