{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "kuberl.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: "<release>-kuberl" unless the release name already contains the chart name. */}}
{{- define "kuberl.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "kuberl.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: immutable once a Deployment exists, so nothing version-dependent here. */}}
{{- define "kuberl.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kuberl.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "kuberl.labels" -}}
helm.sh/chart: {{ include "kuberl.chart" . }}
{{ include "kuberl.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kuberl
{{- end }}

{{- define "kuberl.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kuberl.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "kuberl.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Trainer images: trainer_image/Dockerfile built with TORCH_VARIANT=cpu, and =cu128 for GPU jobs. */}}
{{- define "kuberl.trainerImage" -}}
{{- default (printf "ghcr.io/kuberl/kuberl-trainer:%s" .Chart.AppVersion) .Values.trainerImage }}
{{- end }}

{{- define "kuberl.trainerImageGPU" -}}
{{- default (printf "ghcr.io/kuberl/kuberl-trainer:%s-cu128" .Chart.AppVersion) .Values.trainerImageGPU }}
{{- end }}

{{/* True ("true") when the operator watches every namespace. */}}
{{- define "kuberl.clusterWide" -}}
{{- if not .Values.watch.namespaces }}true{{ end }}
{{- end }}

{{/*
Values that were renamed or removed: the schema lets them through so that this check can say what
to use instead, rather than a bare "additional property not allowed".
*/}}
{{- define "kuberl.checkRemovedValues" -}}
{{- if hasKey .Values "watchNamespaces" }}
{{- fail "value 'watchNamespaces' was removed: use 'watch.namespaces' (a list; empty = cluster-wide)" }}
{{- end }}
{{- if hasKey .Values "serviceMonitor" }}
{{- fail "value 'serviceMonitor' was moved: use 'metrics.serviceMonitor'" }}
{{- end }}
{{- if hasKey .Values "kuberay-operator" }}
{{- fail "value 'kuberay-operator' was removed: the chart no longer bundles KubeRay; install it first with its own chart (docs/install.md)" }}
{{- end }}
{{- end }}

{{/*
The rules the operator needs on namespaced resources; shared by the ClusterRole and each Role. Each
grant is used by the code path named beside it (tests/helm/test_rbac_grants.py checks both ways).
*/}}
{{- define "kuberl.namespacedRules" -}}
# kopf watches jobs and patches its finalizer and progress annotations; k8s.get_job re-reads one.
- apiGroups: ["kuberl.io"]
  resources: ["rltrainingjobs"]
  verbs: ["get", "list", "watch", "patch"]
# k8s.patch_job_status.
- apiGroups: ["kuberl.io"]
  resources: ["rltrainingjobs/status"]
  verbs: ["patch"]
# Children carry blockOwnerDeletion owner references (OwnerReferencesPermissionEnforcement).
- apiGroups: ["kuberl.io"]
  resources: ["rltrainingjobs/finalizers"]
  verbs: ["update"]
# The RayJob watch (handlers.on_ray_job), k8s.get_ray_job / create / patch_ray_job / delete.
- apiGroups: ["ray.io"]
  resources: ["rayjobs"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# The job-spec ConfigMaps, by name only: no list or watch of anyone's ConfigMaps.
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "create", "patch", "delete"]
{{- if .Values.networkPolicy.enabled }}
# One NetworkPolicy per attempt (builders.build_network_policy); garbage-collected with the job.
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["create"]
{{- end }}
# kopf.event (core/v1 Events).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end }}
