{{/* The chart's name, or nameOverride; 63 characters at most (a label value). */}}
{{- define "spansieve.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Object names: fullnameOverride, else the release name, suffixed with the chart's name unless it already contains it. */}}
{{- define "spansieve.fullname" -}}
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

{{/* Labels that select the pods: never change them in an upgrade (a DaemonSet's selector is immutable). */}}
{{- define "spansieve.selectorLabels" -}}
app.kubernetes.io/name: {{ include "spansieve.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "spansieve.labels" -}}
{{ include "spansieve.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/component: node-agent
app.kubernetes.io/part-of: spansieve
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* health_check's path as the config sets it, for the probes. */}}
{{- define "spansieve.healthPath" -}}
{{- dig "extensions" "health_check" "path" "/" .Values.config }}
{{- end }}
