{{/* Names */}}
{{- define "tcs.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tcs.fullname" -}}
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

{{- define "tcs.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tcs.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tcs.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "tcs.labels" -}}
helm.sh/chart: {{ include "tcs.chart" . }}
{{ include "tcs.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: talos-csr-signer
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "tcs.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tcs.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "tcs.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Secrets and their namespaces */}}
{{- define "tcs.caSecretNamespace" -}}
{{- default .Release.Namespace .Values.credentials.caSecret.namespace }}
{{- end }}

{{- define "tcs.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "tcs.fullname" .)) .Values.credentials.tlsSecret.name }}
{{- end }}

{{- define "tcs.tlsSecretNamespace" -}}
{{- default .Release.Namespace .Values.credentials.tlsSecret.namespace }}
{{- end }}

{{- define "tcs.issuerName" -}}
{{- default (printf "%s-ca" (include "tcs.fullname" .)) .Values.certManager.issuer.name }}
{{- end }}

{{/* Does the Pod talk to the API server? */}}
{{- define "tcs.usesAPI" -}}
{{- if or (eq .Values.credentials.source "api") .Values.events.enabled }}true{{ end }}
{{- end }}

{{- define "tcs.automountToken" -}}
{{- if kindIs "bool" .Values.automountServiceAccountToken }}
{{- .Values.automountServiceAccountToken }}
{{- else }}
{{- if include "tcs.usesAPI" . }}true{{ else }}false{{ end }}
{{- end }}
{{- end }}

{{- define "tcs.serviceType" -}}
{{- if .Values.service.type }}
{{- .Values.service.type }}
{{- else if eq .Values.mode "daemonset" }}
{{- "ClusterIP" }}
{{- else }}
{{- "LoadBalancer" }}
{{- end }}
{{- end }}

{{/*
Cross-field checks that the JSON schema cannot express with a clear message.
Included once, from the workload template.
*/}}
{{- define "tcs.validate" -}}
{{- $v := .Values }}
{{- if eq $v.credentials.source "files" }}
{{- if and $v.credentials.caSecret.namespace (ne $v.credentials.caSecret.namespace .Release.Namespace) }}
{{- fail (printf "credentials.caSecret.namespace=%s: in files mode the Secret is mounted as a volume, so it must be in the release namespace %s" $v.credentials.caSecret.namespace .Release.Namespace) }}
{{- end }}
{{- if and $v.credentials.tlsSecret.namespace (ne $v.credentials.tlsSecret.namespace .Release.Namespace) }}
{{- fail (printf "credentials.tlsSecret.namespace=%s: in files mode the Secret is mounted as a volume, so it must be in the release namespace %s" $v.credentials.tlsSecret.namespace .Release.Namespace) }}
{{- end }}
{{- end }}
{{- if and $v.certManager.enabled $v.certManager.issuer.create (ne (include "tcs.caSecretNamespace" .) (include "tcs.tlsSecretNamespace" .)) }}
{{- fail (printf "certManager.issuer.create: the CA Issuer lives in the CA Secret's namespace %s but the serving-certificate Secret is wanted in %s; a namespaced Issuer cannot issue there (use one namespace, or an existing ClusterIssuer)" (include "tcs.caSecretNamespace" .) (include "tcs.tlsSecretNamespace" .)) }}
{{- end }}
{{- if and $v.certManager.enabled (not $v.certManager.issuer.create) (not $v.certManager.issuer.name) }}
{{- fail "certManager.issuer.name is required when certManager.issuer.create is false (the existing Issuer or ClusterIssuer to use)" }}
{{- end }}
{{- if and (eq $v.mode "daemonset") (not $v.daemonset.hostPort) (not $v.service.enabled) }}
{{- fail "mode=daemonset with daemonset.hostPort=false and service.enabled=false: nothing would expose port 50001 to the workers" }}
{{- end }}
{{- if and (eq (include "tcs.automountToken" .) "false") (include "tcs.usesAPI" .) }}
{{- fail "automountServiceAccountToken=false but the daemon needs the API (credentials.source=api or events.enabled=true)" }}
{{- end }}
{{- if and $v.podDisruptionBudget.enabled (eq $v.mode "deployment") (not (kindIs "invalid" $v.podDisruptionBudget.minAvailable)) (not (kindIs "invalid" $v.podDisruptionBudget.maxUnavailable)) }}
{{- fail "podDisruptionBudget: set only one of minAvailable and maxUnavailable (set the other to null)" }}
{{- end }}
{{- end }}
