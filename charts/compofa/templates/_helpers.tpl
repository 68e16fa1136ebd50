{{/* The chart name, or nameOverride. */}}
{{- define "compofa.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The prefix of resource names: fullnameOverride, the release name when it holds the chart name, else <release>-<chart>. */}}
{{- define "compofa.fullname" -}}
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

{{/* The name of the operator's Deployment, ServiceAccount, roles and Lease: <fullname>-operator. */}}
{{- define "compofa.operatorName" -}}
{{- printf "%s-operator" (include "compofa.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The operator's metrics Service (also the `job` label Prometheus gives its series). */}}
{{- define "compofa.metricsServiceName" -}}
{{- printf "%s-metrics" (include "compofa.operatorName" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "compofa.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "compofa.operatorName" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "compofa.leaseName" -}}
{{- default (include "compofa.operatorName" .) .Values.leaderElection.leaseName -}}
{{- end -}}

{{/* Labels of every object of the chart, without a component. */}}
{{- define "compofa.commonLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "compofa.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: compofa
{{- end -}}

{{/* Labels of the operator's objects. */}}
{{- define "compofa.labels" -}}
{{ include "compofa.commonLabels" . }}
app.kubernetes.io/component: operator
{{- end -}}

{{/* Labels that select the operator's pods. */}}
{{- define "compofa.selectorLabels" -}}
app.kubernetes.io/name: {{ include "compofa.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{/* <repository>:<tag>, the tag defaulting to the chart's appVersion. Call with (list $image $). */}}
{{- define "compofa.image" -}}
{{- $image := index . 0 -}}
{{- $root := index . 1 -}}
{{- printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) -}}
{{- end -}}

{{/* A duration such as 90s, 30m, 2h or 1d in seconds, for PromQL comparisons with time(). */}}
{{- define "compofa.durationSeconds" -}}
{{- $value := toString . -}}
{{- if not (regexMatch "^[0-9]+[smhd]$" $value) -}}
{{- fail (printf "%q is not a duration like 90s, 30m, 2h or 1d" $value) -}}
{{- end -}}
{{- $number := regexFind "^[0-9]+" $value | atoi -}}
{{- $unit := get (dict "s" 1 "m" 60 "h" 3600 "d" 86400) (regexFind "[smhd]$" $value) -}}
{{- mul $number $unit -}}
{{- end -}}
