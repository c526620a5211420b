"""Label, annotation and name constants shared by builders, reconcilers and tests."""

from __future__ import annotations

# kuberl.io/job: ppo-cartpole — every child of an RLTrainingJob carries its name.
LABEL_JOB = "kuberl.io/job"
# kuberl.io/attempt: "0" — which retry of the job this child belongs to.
LABEL_ATTEMPT = "kuberl.io/attempt"
# app.kubernetes.io/managed-by: kuberl — the standard label saying who owns the object.
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "kuberl"
# batch.kubernetes.io/job-name: ppo-cartpole-r0 — set by the Job controller on the pods of KubeRay's
# submitter Job, which is named after the RayJob.
LABEL_SUBMITTER_JOB = "batch.kubernetes.io/job-name"
# Labels of an RLTrainingJob copied onto its RayJob: queueing systems look for them on the workload.
PASSED_ON_LABELS = ("kueue.x-k8s.io/queue-name", "kueue.x-k8s.io/priority-class")

# Container port names: "metrics" is Ray's exporter on every Ray pod (as KubeRay names it);
# "kuberl-metrics" the trainer's /metrics and /status on the head.
PORT_RAY_METRICS = "metrics"
PORT_TRAINER = "kuberl-metrics"

# kuberl.io/status-url: http://127.0.0.1:9000 — overrides where the operator reads the trainer's /status
# (tests point it at a loopback server; on a cluster the head service is used).
ANNOTATION_STATUS_URL = "kuberl.io/status-url"

FINALIZER = "kuberl.io/finalizer"
PROGRESS_PREFIX = "kuberl.io"
PEERING_NAME = "kuberl"

# Where the ConfigMap holding the job document is mounted in the head container.
SPEC_MOUNT_DIR = "/etc/kuberl"
SPEC_FILE = "job.yaml"
