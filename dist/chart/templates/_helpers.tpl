{{/*
The chart name, or nameOverride.
*/}}
{{- define "webhook-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every object name: fullnameOverride, else the release name when it already contains the
chart name, else <release>-<chart>. Truncated to leave room for the longest suffix.
*/}}
{{- define "webhook-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The chart label value: name-version.
*/}}
{{- define "webhook-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of the manager Pods, used by the Deployment and the metrics Service and ServiceMonitor selectors.
*/}}
{{- define "webhook-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "webhook-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
control-plane: controller-manager
{{- end }}

{{/*
Labels of every object.
*/}}
{{- define "webhook-operator.labels" -}}
helm.sh/chart: {{ include "webhook-operator.chart" . }}
{{ include "webhook-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
The manager's service account.
*/}}
{{- define "webhook-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (printf "%s-controller-manager" (include "webhook-operator.fullname" .)) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The manager image: repository:tag, the tag defaulting to the chart's appVersion.
*/}}
{{- define "webhook-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/*
The name of the metrics port: https when the metrics are served securely, else http.
*/}}
{{- define "webhook-operator.metricsPortName" -}}
{{- if .Values.metrics.secure }}https{{ else }}http{{ end }}
{{- end }}

{{/*
The shard names of sharding.shards, as strings, after checking them: each one becomes part of object
names, of a label value and of the manager's --watch-label-selector, so it must be a DNS label, unique,
and short enough for the longest name it goes into. Empty when the chart is not sharded.
*/}}
{{- define "webhook-operator.shards" -}}
{{- $shards := list }}
{{- $sharding := .Values.sharding | default dict }}
{{- with $sharding.shards }}
{{- $key := $sharding.key | default "" | toString }}
{{- if not (regexMatch "^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$" $key) }}
{{- fail (printf "sharding.key %q is not a label key: sharding.shards needs the label that assigns DocumentEvents and WebhookEndpoints to shards, such as webhooks.1flow.io/shard" $key) }}
{{- end }}
{{- range . }}
{{- $shard := toString . }}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" $shard) }}
{{- fail (printf "sharding.shards: %q is not a shard name: use lower-case letters, digits and '-', starting and ending with a letter or digit" $shard) }}
{{- end }}
{{- if has $shard $shards }}
{{- fail (printf "sharding.shards: %q is listed twice" $shard) }}
{{- end }}
{{- $service := printf "%s-metrics-service-%s" (include "webhook-operator.fullname" $) $shard }}
{{- if gt (len $service) 63 }}
{{- fail (printf "sharding.shards: %q makes the shard's metrics Service name %s longer than 63 characters: use a shorter shard name, release name or fullnameOverride" $shard $service) }}
{{- end }}
{{- $shards = append $shards $shard }}
{{- end }}
{{- range $.Values.extraArgs }}
{{- if regexMatch "^--?(watch-label-selector|leader-election-id)(=|$)" (toString .) }}
{{- fail (printf "extraArgs sets %s, which the chart sets for each shard when sharding.shards is not empty" (toString .)) }}
{{- end }}
{{- end }}
{{- end }}
{{- toJson $shards }}
{{- end }}

{{/*
Labels of the Pods of one manager Deployment, which are also its selector and the metrics Service's:
the main instance's (shard "") are selectorLabels, unchanged by sharding; a shard's differ in
control-plane, so that no Deployment or Service selects another one's Pods, and carry the sharding key
with the shard's name, as the objects the shard serves do. Takes (dict "root" . "shard" name).
*/}}
{{- define "webhook-operator.managerSelectorLabels" -}}
{{- if .shard -}}
app.kubernetes.io/name: {{ include "webhook-operator.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
control-plane: controller-manager-{{ .shard }}
{{ .root.Values.sharding.key }}: {{ .shard | quote }}
{{- else }}
{{- include "webhook-operator.selectorLabels" .root }}
{{- end }}
{{- end }}

{{/*
Labels of the objects of one manager Deployment (the Deployment and its metrics Service): those of every
object, and for a shard the sharding key with the shard's name, as on the objects the shard serves.
Takes (dict "root" . "shard" name).
*/}}
{{- define "webhook-operator.managerLabels" -}}
{{ include "webhook-operator.labels" .root }}
{{- if .shard }}
{{ .root.Values.sharding.key }}: {{ .shard | quote }}
{{- end }}
{{- end }}

{{/*
The suffix of a shard's object names: "-<shard>", or nothing for the main instance.
*/}}
{{- define "webhook-operator.shardSuffix" -}}
{{- with .shard }}-{{ . }}{{ end }}
{{- end }}
