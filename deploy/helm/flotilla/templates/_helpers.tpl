{{/*
Names. With the release name `flotilla` every object has the name the kustomize bases in
deploy/ give it: flotilla-hub, flotilla-hub-peers, flotilla-agent, ...
*/}}
{{- define "flotilla.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "flotilla.fullname" -}}
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

{{- define "flotilla.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "flotilla.hub.fullname" -}}{{ include "flotilla.fullname" . }}-hub{{- end }}
{{- define "flotilla.hub.peers" -}}{{ include "flotilla.fullname" . }}-hub-peers{{- end }}
{{- define "flotilla.hub.config" -}}{{ include "flotilla.fullname" . }}-hub-config{{- end }}
{{- define "flotilla.agent.fullname" -}}{{ include "flotilla.fullname" . }}-agent{{- end }}

{{/* Labels every object carries. */}}
{{- define "flotilla.labels" -}}
helm.sh/chart: {{ include "flotilla.chart" . }}
app.kubernetes.io/part-of: flotilla
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels: the bases' name label, and the release, so two releases never mix. */}}
{{- define "flotilla.hub.selectorLabels" -}}
app.kubernetes.io/name: {{ include "flotilla.name" . }}-hub
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "flotilla.agent.selectorLabels" -}}
app.kubernetes.io/name: {{ include "flotilla.name" . }}-agent
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "flotilla.hub.labels" -}}
{{ include "flotilla.labels" . }}
app.kubernetes.io/name: {{ include "flotilla.name" . }}-hub
{{- end }}

{{- define "flotilla.agent.labels" -}}
{{ include "flotilla.labels" . }}
app.kubernetes.io/name: {{ include "flotilla.name" . }}-agent
{{- end }}

{{- define "flotilla.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}
{{- end }}

{{- define "flotilla.hub.serviceAccountName" -}}
{{- if .Values.hub.serviceAccount.create }}
{{- default (include "flotilla.hub.fullname" .) .Values.hub.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.hub.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "flotilla.agent.serviceAccountName" -}}
{{- if .Values.agent.serviceAccount.create }}
{{- default (include "flotilla.agent.fullname" .) .Values.agent.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.agent.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Secrets: created from values when given, else the existing Secret of that name. */}}
{{- define "flotilla.hub.caSecret" -}}
{{- if and .Values.hub.ca.cert .Values.hub.ca.key }}
{{- include "flotilla.hub.fullname" . }}-ca
{{- else }}
{{- default (printf "%s-ca" (include "flotilla.hub.fullname" .)) .Values.hub.ca.existingSecret }}
{{- end }}
{{- end }}

{{- define "flotilla.hub.webhookSecret" -}}
{{- if .Values.hub.webhook.secret }}
{{- include "flotilla.hub.fullname" . }}-webhook
{{- else }}
{{- default (printf "%s-webhook" (include "flotilla.hub.fullname" .)) .Values.hub.webhook.existingSecret }}
{{- end }}
{{- end }}

{{/* The CA certificate the agent's Secret holds when the chart creates it; empty otherwise. */}}
{{- define "flotilla.agent.caCert" -}}
{{- default .Values.hub.ca.cert .Values.agent.bootstrap.caCert }}
{{- end }}

{{- define "flotilla.agent.bootstrapSecret" -}}
{{- if include "flotilla.agent.caCert" . }}
{{- include "flotilla.agent.fullname" . }}-bootstrap
{{- else }}
{{- default (printf "%s-bootstrap" (include "flotilla.agent.fullname" .)) .Values.agent.bootstrap.existingSecret }}
{{- end }}
{{- end }}

{{/* The scheme of the hub's HTTP listener: TLS unless the config says insecure. */}}
{{- define "flotilla.hub.scheme" -}}
{{- if .Values.hub.config.insecure }}HTTP{{ else }}HTTPS{{ end }}
{{- end }}

{{/* Keys of the config file the chart sets itself; hub.config may not set them. */}}
{{- define "flotilla.hub.ownedKeys" -}}
group dataDir listen apiListen httpListen advertise id join peers caCert caKey tlsSans sshKey clusters
{{- end }}

{{/* hub.yaml, the config file every hub pod reads (keys as in `flotilla-hub --help`). */}}
{{- define "flotilla.hub.configFile" -}}
{{- $hub := include "flotilla.hub.fullname" . -}}
{{- $peers := include "flotilla.hub.peers" . -}}
{{- $ns := .Release.Namespace -}}
{{- range $key, $_ := .Values.hub.config }}
{{- if has $key (splitList " " (include "flotilla.hub.ownedKeys" $)) }}
{{- fail (printf "hub.config.%s is set by the chart from other values; remove it (see values.yaml)" $key) }}
{{- end }}
{{- end -}}
# flotilla-hub config file, rendered by the flotilla chart. `--id` and `--advertise` come from
# the pod (StatefulSet ordinal and name) as arguments.
group: {{ .Values.hub.group | quote }}
dataDir: /var/lib/flotilla-hub
listen: 0.0.0.0:{{ .Values.hub.ports.peer }}
apiListen: 0.0.0.0:{{ .Values.hub.ports.api }}
httpListen: 0.0.0.0:{{ .Values.hub.ports.http }}
# The founding members, used only while a node's data dir is empty.
peers:
{{- range $i := until (int .Values.hub.replicas) }}
  {{ add1 $i }}: {{ $hub }}-{{ add1 $i }}.{{ $peers }}.{{ $ns }}.svc:{{ $.Values.hub.ports.peer }}
{{- end }}
caCert: /etc/flotilla/ca/ca.crt
caKey: /etc/flotilla/ca/ca.key
tlsSans:
  - {{ $hub }}
  - {{ $hub }}.{{ $ns }}
  - {{ $hub }}.{{ $ns }}.svc
  - {{ $hub }}.{{ $ns }}.svc.{{ .Values.clusterDomain }}
{{- range .Values.hub.tlsSans }}
  - {{ . | quote }}
{{- end }}
{{- if .Values.hub.git.sshKeySecret }}
sshKey: /etc/flotilla/git/ssh-privatekey
{{- end }}
{{- if .Values.hub.clusters }}
clusters: /etc/flotilla/clusters.yaml
{{- end }}
{{- with .Values.hub.config }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The agent's hub addresses, comma-separated. */}}
{{- define "flotilla.agent.hubs" -}}
{{- if .Values.agent.hubs }}
{{- join "," .Values.agent.hubs }}
{{- else }}
{{- include "flotilla.hub.fullname" . }}.{{ .Release.Namespace }}.svc:{{ .Values.hub.ports.api }}
{{- end }}
{{- end }}
