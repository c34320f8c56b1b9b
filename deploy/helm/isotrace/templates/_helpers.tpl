{{- define "isotrace.name" -}}isotrace{{- end -}}
{{- define "isotrace.labels" -}}
app.kubernetes.io/name: {{ include "isotrace.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: node-agent
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}
{{- define "isotrace.selector" -}}
app.kubernetes.io/name: {{ include "isotrace.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
