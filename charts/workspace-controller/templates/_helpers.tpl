{{- define "workspace-controller.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "workspace-controller.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "workspace-controller.selectorLabels" -}}
app.kubernetes.io/name: {{ include "workspace-controller.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "workspace-controller.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "workspace-controller.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: controller
app.kubernetes.io/part-of: kaito
{{- end -}}

{{- define "workspace-controller.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "workspace-controller.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "workspace-controller.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "workspace-controller.runtimeImage" -}}
{{- printf "%s:%s" .Values.runtime.image.repository (default .Chart.AppVersion .Values.runtime.image.tag) -}}
{{- end -}}

{{- define "workspace-controller.webhookService" -}}
{{- printf "%s-webhook" (include "workspace-controller.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "workspace-controller.webhookSecret" -}}
{{- default (printf "%s-webhook-cert" (include "workspace-controller.fullname" .)) .Values.webhook.certificate.existingSecret -}}
{{- end -}}
