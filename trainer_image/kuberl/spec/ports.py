"""The ports of a job's Ray head pod, in one place: the spec refuses a job whose ports collide
(kuberl.spec.combinations), and the operator opens them on the head container (kuberl_operator.builders).

Port 0 in the spec means "pick a free one", which is fine on a laptop; on Kubernetes a Service needs a
fixed port, so 0 becomes the default below.
"""

from __future__ import annotations

# The trainer's /metrics and /status (spec.metrics.port).
DEFAULT_METRICS_PORT = 8080
# The policy server of external simulators (spec.external.port).
DEFAULT_POLICY_SERVER_PORT = 8900

# What the Ray head container opens on the trainer's host: (container port name, port, who listens).
RAY_HEAD_CONTAINER_PORTS: tuple[tuple[str, int, str], ...] = (
    ("gcs-server", 6379, "the Ray GCS server"),
    ("dashboard", 8265, "the Ray dashboard"),
    ("client", 10001, "the Ray client server"),
)
RAY_HEAD_PORTS: dict[int, str] = {port: who for _, port, who in RAY_HEAD_CONTAINER_PORTS}
# Ray's own metrics exporter would also default to 8080 on the head, so it gets the first of these
# that is not the trainer's metrics port (set explicitly in rayStartParams).
RAY_METRICS_PORTS = (8079, 8078)


def metrics_port(port: int) -> int:
    """spec.metrics.port as served on Kubernetes."""
    return port or DEFAULT_METRICS_PORT


def policy_server_port(port: int) -> int:
    """spec.external.port as served on Kubernetes."""
    return port or DEFAULT_POLICY_SERVER_PORT


def ray_metrics_port(trainer_metrics_port: int) -> int:
    """The port of Ray's metrics exporter on the head, given the trainer's (Kubernetes) metrics port."""
    return next(p for p in RAY_METRICS_PORTS if p != trainer_metrics_port)
