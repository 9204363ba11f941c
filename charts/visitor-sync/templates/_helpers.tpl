{{/*
Names and labels shared by every template.
*/}}

{{/* The chart's name, overridable. */}}
{{- define "visitor-sync.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-scoped base name of the operator's objects (63 characters at most). */}}
{{- define "visitor-sync.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "visitor-sync.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "visitor-sync.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* The labels of the operator's pod, Deployment selector and metrics Service selector. */}}
{{- define "visitor-sync.selectorLabels" -}}
app.kubernetes.io/name: {{ include "visitor-sync.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* Labels on every object the chart makes. */}}
{{- define "visitor-sync.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "visitor-sync.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: visitor-sync
{{- end }}

{{/* The ServiceAccount the operator runs as. */}}
{{- define "visitor-sync.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "visitor-sync.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* An image reference from {repository, tag, digest}; the tag defaults to appVersion. */}}
{{- define "visitor-sync.image" -}}
{{- $image := index . 0 }}
{{- $root := index . 1 }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) }}
{{- end }}
{{- end }}

{{/*
The operator's permissions: exactly operator/visitor_sync_operator/rbac.py RULES
(tests/test_chart.py compares them, in both the ClusterRole and the Role mode).
*/}}
{{- define "visitor-sync.rules" -}}
# The districts: watched, annotated by kopf's bookkeeping, status written.
- apiGroups: ["sync.visitoraware.io"]
  resources: ["districtsyncs"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["sync.visitoraware.io"]
  resources: ["districtsyncs/status"]
  verbs: ["patch"]
# Children, applied idempotently (read, created when absent, patched when drifted).
- apiGroups: [""]
  resources: ["configmaps", "persistentvolumeclaims", "secrets", "services"]
  verbs: ["get", "create", "patch"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "create", "patch"]
- apiGroups: ["batch"]
  resources: ["cronjobs"]
  verbs: ["get", "create", "patch"]
# Watched children: the SFTP server's readiness, the runs ending.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "patch"]
# A finished run's summary is its pod's termination message.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list"]
# kopf posts Events about the districts (core API).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
# No request uses it: OwnerReferencesPermissionEnforcement (OpenShift) refuses children
# with blockOwnerDeletion unless their owner's finalizers may be updated.
- apiGroups: ["sync.visitoraware.io"]
  resources: ["districtsyncs/finalizers"]
  verbs: ["update"]
{{- end }}
