"""`python -m kuberl_operator`: run the operator, configured by environment variables.

KUBERL_NAMESPACES             comma-separated namespaces to watch, or "all" (default: all)
KUBERL_OPERATOR_METRICS_PORT  the operator's /metrics port (default 8081)
KUBERL_DEFAULT_IMAGE          trainer image for jobs that name none in spec.cluster.image
KUBERL_DEFAULT_GPU_IMAGE      the same for jobs that ask for GPUs (a CUDA build)
KUBERL_NETWORK_POLICY         "false": create no NetworkPolicy per job (default true)
KUBERL_LIVENESS               the health endpoint (default http://0.0.0.0:8082/healthz)
KUBERL_SYNC_INTERVAL          seconds between progress reads of each Running job (default 30)
KUBERL_PROGRESS_CONCURRENCY   progress reads in flight at most (default 16)
KUBERL_STATUS_URL_TEMPLATE    where /status is read, e.g. http://{service}.{namespace}.svc:{port}
KUBERL_LEADER_ELECTION        "false" to run without the Lease (a single replica); default on
KUBERL_LEASE_NAME             the Lease's name (default kuberl-operator; the chart sets its fullname)
KUBERL_LEASE_NAMESPACE        the Lease's namespace (default: the pod's, else the kubeconfig context's)
KUBERL_LEASE_DURATION         seconds a standby waits after the last renewal before taking over (15)
POD_NAME                      this replica's identity in the Lease (default: hostname and pid)
KUBERL_LOG_LEVEL              DEBUG, INFO (default), WARNING or ERROR

Only the replica holding the Lease runs kopf's handlers; the others stand by, healthy, and take over
when the Lease expires (see leader.py). Losing the Lease stops the process (exit status 1) so that no
two replicas act at once; kubelet restarts it as a standby.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
from pathlib import Path
from urllib.parse import urlsplit

import kopf
import kubernetes
from aiohttp import web

from kuberl_operator import handlers  # importing registers the kopf handlers
from kuberl_operator.k8s import load_config
from kuberl_operator.leader import LEASE_DURATION_S, LeaseElector
from kuberl_operator.metrics import OperatorMetrics
from kuberl_operator.settings import namespaces_from_env

SA_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
log = logging.getLogger("kuberl_operator")


def lease_namespace() -> str:
    """KUBERL_LEASE_NAMESPACE, else the pod's own namespace (in a cluster), else the kubeconfig
    context's namespace (as kubectl picks it), else "default"."""
    if os.environ.get("KUBERL_LEASE_NAMESPACE"):
        return os.environ["KUBERL_LEASE_NAMESPACE"]
    try:
        return SA_NAMESPACE_FILE.read_text().strip() or "default"
    except OSError:
        pass
    try:
        _, active = kubernetes.config.list_kube_config_contexts()
    except (kubernetes.config.ConfigException, OSError):
        return "default"
    return str((active or {}).get("context", {}).get("namespace") or "default")


def elector_from_env(metrics: OperatorMetrics) -> LeaseElector | None:
    if os.environ.get("KUBERL_LEADER_ELECTION", "true").lower() in ("0", "false", "no", "off"):
        return None
    duration = float(os.environ.get("KUBERL_LEASE_DURATION") or LEASE_DURATION_S)
    return LeaseElector(
        namespace=lease_namespace(),
        name=os.environ.get("KUBERL_LEASE_NAME") or "kuberl-operator",
        identity=os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}",
        duration_s=duration,
        # client-go's proportions (15 / 10 / 2 s), scaled with the duration.
        renew_deadline_s=duration * 2 / 3,
        retry_s=duration * 2 / 15,
        on_change=lambda leader: metrics.leader.set(1 if leader else 0),
    )


async def serve_health(endpoint: str) -> web.AppRunner:
    """/healthz answers 200 while the process runs, leading or standing by: a standby is healthy."""
    url = urlsplit(endpoint)

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get(url.path or "/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, url.hostname or "0.0.0.0", url.port or 8082).start()
    return runner


async def run() -> int:
    namespaces = namespaces_from_env(os.environ.get("KUBERL_NAMESPACES"))
    metrics = OperatorMetrics()
    metrics.serve(int(os.environ.get("KUBERL_OPERATOR_METRICS_PORT", handlers.DEFAULT_METRICS_PORT)))
    health = await serve_health(os.environ.get("KUBERL_LIVENESS", "http://0.0.0.0:8082/healthz"))
    load_config()
    elector = elector_from_env(metrics)
    stop = asyncio.Event()
    holding: asyncio.Task[None] | None = None
    try:
        if elector is not None:
            await elector.acquire()
            holding = asyncio.create_task(elector.hold())
            holding.add_done_callback(lambda _: stop.set())
        else:
            metrics.leader.set(1)
        await kopf.operator(
            registry=kopf.get_default_registry(),
            clusterwide=namespaces is None,
            namespaces=namespaces or (),
            standalone=True,
            stop_flag=stop,
            memo=kopf.Memo(metrics=metrics),
        )
    finally:
        lost = holding is not None and holding.done()
        if holding is not None:
            holding.cancel()
        if elector is not None and not lost:
            await asyncio.to_thread(elector.release)
        await health.cleanup()
    if lost:
        log.error("Leader Lease lost: exiting so that a standby takes over")
        return 1
    return 0


def main() -> None:
    level = os.environ.get("KUBERL_LOG_LEVEL", "INFO").upper()
    kopf.configure(verbose=bool(os.environ.get("KUBERL_VERBOSE")) or level == "DEBUG")
    logging.getLogger().setLevel(getattr(logging, level, logging.INFO))
    try:
        sys.exit(asyncio.run(run()))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
