{{/*
Names, labels and the few decisions several templates share.
*/}}

{{- define "accord.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "accord.fullname" -}}
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

{{- define "accord.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "accord.selectorLabels" -}}
app.kubernetes.io/name: {{ include "accord.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "accord.labels" -}}
helm.sh/chart: {{ include "accord.chart" . }}
{{ include "accord.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: accord
{{- end }}

{{- define "accord.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "accord.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "accord.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/*
The shards the replicas split the namespaces into (the operator's --shards): `shards`, or with 0 as
many as replicaCount. Each is the Lease <fullname>-shard-<i>, i from 0 to this minus 1.
*/}}
{{- define "accord.shards" -}}
{{- $shards := int (.Values.shards | default .Values.replicaCount) }}
{{- if gt $shards 1024 }}
{{- fail (printf "the replicas count %d shards, at most 1024 are possible: set shards (1..1024)" $shards) }}
{{- end }}
{{- $shards }}
{{- end }}

{{/* The Secret holding the webhook's serving certificate: yours, cert-manager's or the chart's own. */}}
{{- define "accord.webhookCertSecret" -}}
{{- if and .Values.webhook.enabled .Values.webhook.certSecret.name }}
{{- .Values.webhook.certSecret.name }}
{{- else if .Values.webhook.enabled }}
{{- printf "%s-webhook-tls" (include "accord.fullname" .) }}
{{- end }}
{{- end }}

{{/* The host name the API server calls the webhook at: the webhook Service. */}}
{{- define "accord.webhookHost" -}}
{{- printf "%s-webhook.%s.svc" (include "accord.fullname" .) .Release.Namespace }}
{{- end }}

{{/*
PodDisruptionBudget moved to policy/v1 in Kubernetes 1.21. The version check also covers
`helm template --kube-version`, whose API list is helm's own rather than the server's.
*/}}
{{- define "accord.pdbApiVersion" -}}
{{- if and (.Capabilities.APIVersions.Has "policy/v1") (semverCompare ">=1.21-0" .Capabilities.KubeVersion.Version) -}}
policy/v1
{{- else -}}
policy/v1beta1
{{- end }}
{{- end }}

{{/*
Grant namespaced permissions: a ClusterRole with a ClusterRoleBinding, or with watchNamespaces a Role
and a RoleBinding in each watched namespace (the namespaced install holds no ClusterRole of these).
Call with (dict "root" $ "name" "<role name>" "rules" "<YAML list of rules>").
*/}}
{{- define "accord.grant" -}}
{{- $root := .root }}
{{- $name := .name }}
{{- $rules := .rules }}
{{- range ($root.Values.watchNamespaces | default (list "")) }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: {{ if . }}Role{{ else }}ClusterRole{{ end }}
metadata:
  name: {{ $name }}
  {{- if . }}
  namespace: {{ . }}
  {{- end }}
  labels:
    {{- include "accord.labels" $root | nindent 4 }}
rules:
  {{- $rules | nindent 2 }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: {{ if . }}RoleBinding{{ else }}ClusterRoleBinding{{ end }}
metadata:
  name: {{ $name }}
  {{- if . }}
  namespace: {{ . }}
  {{- end }}
  labels:
    {{- include "accord.labels" $root | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: {{ if . }}Role{{ else }}ClusterRole{{ end }}
  name: {{ $name }}
subjects:
  - kind: ServiceAccount
    name: {{ include "accord.serviceAccountName" $root }}
    namespace: {{ $root.Release.Namespace }}
{{- end }}
{{- end }}

{{/* Accord's namespaced permissions (see rbac-accord.yaml). */}}
{{- define "accord.operatorRules" -}}
- apiGroups: ["accord.dev"]
  resources: ["agents"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["accord.dev"]
  resources: ["negotiationpolicies"]
  # patch: kopf's finalizer on the policies whose daemons run the rounds.
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["accord.dev"]
  resources: ["negotiations"]
  # delete: only the records beyond a policy's history limit.
  verbs: ["get", "list", "watch", "create", "delete"]
- apiGroups: ["accord.dev"]
  resources: ["agents/status", "negotiationpolicies/status", "negotiations/status"]
  verbs: ["patch"]
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets"]
  {{- if .Values.placements.enabled }}
  # patch: placements change the pod template; every change is stamped with its Negotiation.
  verbs: ["get", "list", "watch", "patch"]
  {{- else }}
  verbs: ["get", "list", "watch"]
  {{- end }}
{{- if .Values.placements.enabled }}
# get, list: a placement change's rollout is followed, and the scheduler's reason read from the
# pods it cannot place (their PodScheduled condition). Pods are never written.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list"]
{{- end }}
- apiGroups: ["apps"]
  resources: ["deployments/scale", "statefulsets/scale"]
  # Replicas: an update of the scale subresource with the read resourceVersion.
  verbs: ["get", "update"]
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/* kopf's namespaced permissions (see rbac-kopf.yaml). */}}
{{- define "accord.kopfNamespacedRules" -}}
# kopf reports handler failures as Events on the object.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end }}
