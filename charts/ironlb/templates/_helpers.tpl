{{/* The chart name, overridable. */}}
{{- define "ironlb.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The prefix of every object name: the release name, plus the chart name unless the release name
already contains it. Truncated so that the longest suffix ("-controller-metrics", 19 characters)
still fits a 63-character DNS label.
*/}}
{{- define "ironlb.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 44 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 44 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 44 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "ironlb.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "ironlb.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ironlb
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component; call with (dict "ctx" $ "component" "controller"). */}}
{{- define "ironlb.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ironlb.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* All labels of one component's objects; same argument as ironlb.selectorLabels. */}}
{{- define "ironlb.componentLabels" -}}
{{ include "ironlb.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "ironlb.controller.serviceAccountName" -}}
{{- if .Values.controller.serviceAccount.create -}}
{{- default (printf "%s-controller" (include "ironlb.fullname" .)) .Values.controller.serviceAccount.name -}}
{{- else -}}
{{- required "controller.serviceAccount.name is required when controller.serviceAccount.create is false" .Values.controller.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "ironlb.speaker.serviceAccountName" -}}
{{- if .Values.speaker.serviceAccount.create -}}
{{- default (printf "%s-speaker" (include "ironlb.fullname" .)) .Values.speaker.serviceAccount.name -}}
{{- else -}}
{{- required "speaker.serviceAccount.name is required when speaker.serviceAccount.create is false" .Values.speaker.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding the memberlist key, and the key inside it. */}}
{{- define "ironlb.memberlistSecretName" -}}
{{- default (printf "%s-memberlist" (include "ironlb.fullname" .)) .Values.speaker.memberlist.existingSecret -}}
{{- end -}}
{{- define "ironlb.memberlistSecretKey" -}}
{{- if .Values.speaker.memberlist.existingSecret -}}
{{- .Values.speaker.memberlist.existingSecretKey -}}
{{- else -}}
key
{{- end -}}
{{- end -}}

{{/*
The base64 data of the memberlist key in the Secret the chart manages: the key value if set;
else the data of the Secret already in the cluster (so upgrades keep the key byte for byte);
else a new random key. `lookup` returns nothing under `helm template` and client-side dry runs,
so those render a new random key every time (values.yaml says what to do about it).
*/}}
{{- define "ironlb.memberlistKeyData" -}}
{{- $m := .Values.speaker.memberlist -}}
{{- if and $m.extraKeys (not $m.key) -}}
{{- fail "speaker.memberlist.extraKeys needs speaker.memberlist.key: the key that encrypts" -}}
{{- end -}}
{{- if $m.key -}}
{{- prepend ($m.extraKeys | default list) $m.key | join "\n" | b64enc -}}
{{- else -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "ironlb.memberlistSecretName" .) -}}
{{- $data := dig "data" "key" "" $existing -}}
{{- if $data -}}
{{- $data -}}
{{- else -}}
{{- randAlphaNum 32 | b64enc -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* image reference of a component; call with (dict "ctx" $ "image" .Values.controller.image). */}}
{{- define "ironlb.image" -}}
{{- printf "%s:%s" .image.repository (default .ctx.Chart.AppVersion .image.tag) -}}
{{- end -}}

{{/* The --load-balancer-class flags both binaries share, one list item per line. */}}
{{- define "ironlb.classArgs" -}}
{{- $args := list -}}
{{- with .Values.loadBalancerClass.name -}}
{{- $args = append $args (printf "--load-balancer-class=%s" .) -}}
{{- end -}}
{{- if .Values.loadBalancerClass.only -}}
{{- $args = append $args "--only-load-balancer-class" -}}
{{- end -}}
{{- with $args -}}
{{- toYaml . -}}
{{- end -}}
{{- end -}}

{{/*
The env entries that point rest.InClusterConfig at the API server directly (values: apiServer),
one list item per line; nothing when apiServer.host is empty. They override the kubelet's own
KUBERNETES_SERVICE_HOST/PORT (the kubernetes Service's ClusterIP).
*/}}
{{- define "ironlb.apiServerEnv" -}}
{{- with .Values.apiServer.host -}}
{{- if not (or (regexMatch "^([0-9]{1,3}[.]){3}[0-9]{1,3}$" .) (contains ":" .)) -}}
{{- fail (printf "apiServer.host %q: want an IPv4 or IPv6 address (no brackets, no DNS name)" .) -}}
{{- end -}}
- name: KUBERNETES_SERVICE_HOST
  value: {{ . | quote }}
- name: KUBERNETES_SERVICE_PORT
  value: {{ $.Values.apiServer.port | quote }}
{{- end -}}
{{- end -}}

{{/* The client rate-limit flags of a component (.kubeAPI, .events), one list item per line. */}}
{{- define "ironlb.limitArgs" -}}
{{- $args := list -}}
{{- if not (kindIs "invalid" .kubeAPI.qps) }}{{ $args = append $args (printf "--kube-api-qps=%v" .kubeAPI.qps) }}{{ end -}}
{{- if not (kindIs "invalid" .kubeAPI.burst) }}{{ $args = append $args (printf "--kube-api-burst=%v" .kubeAPI.burst) }}{{ end -}}
{{- if not (kindIs "invalid" .events.qps) }}{{ $args = append $args (printf "--events-qps=%v" .events.qps) }}{{ end -}}
{{- if not (kindIs "invalid" .events.burst) }}{{ $args = append $args (printf "--events-burst=%v" .events.burst) }}{{ end -}}
{{- with $args -}}
{{- toYaml . -}}
{{- end -}}
{{- end -}}
