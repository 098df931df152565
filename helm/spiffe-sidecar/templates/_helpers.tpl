{{/* Names and labels shared by the templates. */}}

{{- define "spiffe-sidecar.name" -}}
{{- printf "%s-injector" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "spiffe-sidecar.labels" -}}
app.kubernetes.io/name: spiffe-sidecar-injector
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "spiffe-sidecar.selectorLabels" -}}
app.kubernetes.io/name: spiffe-sidecar-injector
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The injector's image, and the sidecar's (the same unless sidecar.image overrides it). */}}
{{- define "spiffe-sidecar.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{- define "spiffe-sidecar.sidecarImage" -}}
{{- $repository := .Values.sidecar.image.repository | default .Values.image.repository -}}
{{- $tag := .Values.sidecar.image.tag | default .Values.image.tag | default .Chart.AppVersion -}}
{{- printf "%s:%s" $repository $tag -}}
{{- end -}}

{{/* The Secret holding the webhook's serving certificate. */}}
{{- define "spiffe-sidecar.tlsSecret" -}}
{{- printf "%s-tls" (include "spiffe-sidecar.name" .) -}}
{{- end -}}

{{/* cert-manager or job: where the serving certificate comes from. */}}
{{- define "spiffe-sidecar.certificateSource" -}}
{{- if eq .Values.certificate.source "auto" -}}
{{- if .Capabilities.APIVersions.Has "cert-manager.io/v1" -}}cert-manager{{- else -}}job{{- end -}}
{{- else -}}
{{- .Values.certificate.source -}}
{{- end -}}
{{- end -}}

{{/* Namespaces the webhook is never called for. */}}
{{- define "spiffe-sidecar.excludedNamespaces" -}}
{{- $names := concat (list "kube-system" .Release.Namespace) (.Values.webhook.excludeNamespaces | default (list)) -}}
{{- toYaml ($names | uniq) -}}
{{- end -}}
