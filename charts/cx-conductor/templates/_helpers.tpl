{{/* Name of the chart, overridable. */}}
{{- define "cx-conductor.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name of the release's objects: the release name when it already contains the chart name. */}}
{{- define "cx-conductor.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "cx-conductor.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels that select the operator pods: stable across upgrades. */}}
{{- define "cx-conductor.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cx-conductor.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of every object of the release. */}}
{{- define "cx-conductor.labels" -}}
helm.sh/chart: {{ include "cx-conductor.chart" . }}
{{ include "cx-conductor.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: cx-conductor
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "cx-conductor.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "cx-conductor.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The operator image: repository@digest, or repository:tag (tag defaults to appVersion). */}}
{{- define "cx-conductor.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Fails rendering on combinations values.schema.json cannot express clearly. */}}
{{- define "cx-conductor.validate" -}}
{{- if and (not .Values.leaderElection.enabled) (gt (int .Values.replicaCount) 1) -}}
{{- fail "replicaCount > 1 needs leaderElection.enabled=true: two operators without a leader would fight over every object" -}}
{{- end -}}
{{- end -}}

{{/* PrometheusRule labels as KEY=VALUE,KEY=VALUE for CX_PROMETHEUS_RULE_LABELS. */}}
{{- define "cx-conductor.ruleLabels" -}}
{{- $pairs := list -}}
{{- range $k, $v := . -}}
{{- $pairs = append $pairs (printf "%s=%s" $k $v) -}}
{{- end -}}
{{- join "," $pairs -}}
{{- end -}}

{{/* The operator's permissions, all namespaced (see rbac.yaml): a ClusterRole's rules, or each
watched namespace's Role's. */}}
{{- define "cx-conductor.operatorRules" -}}
- apiGroups: ["cx.conductor.dev"]
  resources: ["channels", "touchpoints", "experiencekpis", "customerjourneys"]
  verbs: ["list", "watch"]
- apiGroups: ["cx.conductor.dev"]
  resources: ["channels/status", "touchpoints/status", "experiencekpis/status", "customerjourneys/status"]
  verbs: ["patch"]
# delete: a touchpoint turned pooled leaves its dedicated collector's objects behind.
- apiGroups: [""]
  resources: ["configmaps", "services"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["list", "watch", "create", "patch", "delete"]
# Collector pools: their configuration is a Secret (it holds each touchpoint's token digest),
# and get/list/watch on Secrets lets the operator check that a touchpoint's auth Secret is
# marked for collector auth (it caches only those, by label) and read its token.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  {{- if .Values.collectors.networkPolicies }}
  # delete: a touchpoint that changes mode leaves its old collector's NetworkPolicy behind.
  verbs: ["list", "watch", "create", "patch", "delete"]
  {{- else }}
  # Collector NetworkPolicies of an earlier configuration are deleted.
  verbs: ["list", "watch", "delete"]
  {{- end }}
- apiGroups: ["monitoring.coreos.com"]
  resources: ["servicemonitors"]
  {{- if .Values.collectors.serviceMonitors }}
  # delete: a touchpoint that changes mode leaves its old collector's ServiceMonitor behind.
  verbs: ["get", "list", "create", "patch", "delete"]
  {{- else }}
  # Collector ServiceMonitors of an earlier configuration are deleted.
  verbs: ["list", "delete"]
  {{- end }}
- apiGroups: ["monitoring.coreos.com"]
  resources: ["prometheusrules"]
  {{- if .Values.kpis.prometheusRules }}
  verbs: ["get", "list", "create", "patch", "delete"]
  {{- else }}
  # KPI PrometheusRules of an earlier configuration (or of a namespace whose last KPI went) are deleted.
  verbs: ["list", "delete"]
  {{- end }}
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end -}}
