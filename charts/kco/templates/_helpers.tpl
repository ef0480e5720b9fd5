{{- define "kco.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}{{ .Release.Name | trunc 63 | trimSuffix "-" }}{{- else -}}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "kco.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "kco.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kco.serviceAccountName" -}}
{{- default (include "kco.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "kco.leaderElection" -}}
{{- $le := toString .Values.leaderElection.enabled -}}
{{- if eq $le "auto" -}}{{ gt (int .Values.replicaCount) 1 }}{{- else -}}{{ $le }}{{- end -}}
{{- end -}}

{{/* The rules kco needs in the namespaces it watches; with kco.crossNamespaceRules, deploy/rbac.yaml. */}}
{{- define "kco.rules" -}}
# The resources kco reconciles; patch covers the finalizer.
- apiGroups: ["kco.dev"]
  resources: ["keycloakclients"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["kco.dev"]
  resources: ["keycloakclients/status", "keycloakrealms/status", "keycloakinstances/status"]
  verbs: ["get", "patch"]
- apiGroups: ["kco.dev"]
  resources: ["keycloakrealms", "keycloakinstances"]
  verbs: ["get", "list", "watch"]
# Managed Secrets are written; user-owned ones (admin credentials, clientSecret) are read.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "patch"]
# CA bundles.
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end -}}


{{/* Cluster-wide mode only: credentials delivered into other namespaces (additionalSecrets[].namespace). */}}
{{- define "kco.crossNamespaceRules" -}}
# Consent to receive credentials in another namespace: read by key, never written.
- apiGroups: ["kco.dev"]
  resources: ["keycloakcredentialsgrants"]
  verbs: ["get"]
# Secrets in other namespaces have no owner reference to collect them: kco deletes them itself.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["delete"]
{{- end -}}
