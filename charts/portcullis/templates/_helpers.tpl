{{/*
Object names are fixed, not prefixed with the release name: the agent and
operator find the ConfigMap portcullis-agent-config by name, the aggregated
ClusterRoles are named for users, and one install per cluster is all that
makes sense (the agents own each node's datapath). They match config/.
*/}}

{{/* Labels on every object. */}}
{{- define "portcullis.labels" -}}
app.kubernetes.io/name: portcullis
app.kubernetes.io/part-of: portcullis
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* Selector labels of one component; call with (list . "agent"). */}}
{{- define "portcullis.selectorLabels" -}}
app.kubernetes.io/name: portcullis
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* Full labels of one component; call with (list . "agent"). */}}
{{- define "portcullis.componentLabels" -}}
{{ include "portcullis.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* An image reference; call with (list . .Values.images.agent). */}}
{{- define "portcullis.image" -}}
{{- $img := index . 1 -}}
{{- printf "%s:%s" $img.repository (default (index . 0).Chart.AppVersion $img.tag) -}}
{{- end }}

{{/*
Checks that the schema cannot express, with a message that says what to do.
Included by the templates that depend on them.
*/}}
{{- define "portcullis.validate" -}}
{{- if eq .Values.secretsNamespace .Release.Namespace -}}
{{- fail (printf "secretsNamespace must not be the release namespace %q: the agents may read every Secret in it, and it is meant to hold only the TLS material the operator copies there" .Release.Namespace) -}}
{{- end -}}
{{- if and (not .Values.operator.leaderElection) (gt (int .Values.operator.replicas) 1) -}}
{{- fail "operator.replicas > 1 needs operator.leaderElection=true: without it the replicas reconcile against each other" -}}
{{- end -}}
{{- end }}
