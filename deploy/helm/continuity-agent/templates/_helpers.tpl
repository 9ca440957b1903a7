{{/*
Names and labels, as `helm create` lays them out.
*/}}
{{- define "continuity-agent.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "continuity-agent.fullname" -}}
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

{{- define "continuity-agent.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "continuity-agent.selectorLabels" -}}
app.kubernetes.io/name: {{ include "continuity-agent.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "continuity-agent.labels" -}}
helm.sh/chart: {{ include "continuity-agent.chart" . }}
{{ include "continuity-agent.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Where state lives: PostgreSQL when store.postgresUrl is set, else SQLite on
the volume. Replicas share state and elect a leader through PostgreSQL, so
several replicas without it are refused here rather than left to split.
*/}}
{{- define "continuity-agent.postgres" -}}
{{- if .Values.store.postgresUrl }}true{{ end }}
{{- end }}

{{- define "continuity-agent.storeUrl" -}}
{{- if .Values.store.postgresUrl }}
{{- .Values.store.postgresUrl }}
{{- else if gt (int .Values.replicaCount) 1 }}
{{- fail "replicaCount > 1 needs store.postgresUrl: replicas share state and elect a leader through one PostgreSQL database (docs/replicas.md)" }}
{{- else }}
{{- print "sqlite:///var/lib/continuity-agent/state.db" }}
{{- end }}
{{- end }}

{{- define "continuity-agent.secretName" -}}
{{- required "secrets.name: the Secret holding talkdesk-client-secret and the other secret files; create it before installing" .Values.secrets.name }}
{{- end }}
