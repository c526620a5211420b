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

{{- define "kuberl.trainerImage" -}}
{{- default (printf "ghcr.io/kuberl/kuberl-trainer:%s" .Chart.AppVersion) .Values.trainerImage }}
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
{{- end }}

{{/* The rules the operator needs on namespaced resources; shared by the ClusterRole and each Role. */}}
{{- define "kuberl.namespacedRules" -}}
- apiGroups: ["kuberl.io"]
  resources: ["rltrainingjobs"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["kuberl.io"]
  resources: ["rltrainingjobs/status", "rltrainingjobs/finalizers"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["ray.io"]
  resources: ["rayjobs"]
  verbs: ["get", "list", "watch", "create", "delete", "patch"]
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch", "create", "delete", "patch"]
- apiGroups: ["", "events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
