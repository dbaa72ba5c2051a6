{{/*
Object names: the release name, with the chart's name appended unless it is already in it, so that
`helm install predictive-autoscaler` names everything as the kustomize base does.
*/}}
{{- define "predictive-autoscaler.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/*
The base's labels plus Helm's. app.kubernetes.io/name stays the chart's name whatever the release
is called: the ServiceMonitor names the scrape job after it, and the alert rules expect that job.
*/}}
{{- define "predictive-autoscaler.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/part-of: predictive-autoscaler
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/*
The controller's pods. The instance keeps two releases in one namespace from selecting each other's.
*/}}
{{- define "predictive-autoscaler.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end -}}

{{- define "predictive-autoscaler.leaseName" -}}
{{- .Values.leaderElection.leaseName | default (include "predictive-autoscaler.fullname" .) -}}
{{- end -}}

{{/*
The Lease of each shard, a YAML list: the plain lease name for one shard, else <name>-<shard>
(autoscaler.actuation.shards.lease_names).
*/}}
{{- define "predictive-autoscaler.leaseNames" -}}
{{- $name := include "predictive-autoscaler.leaseName" . -}}
{{- if eq (int .Values.shards) 1 -}}
- {{ $name | quote }}
{{- else -}}
{{- range $shard := until (int .Values.shards) }}
- {{ printf "%s-%d" $name $shard | quote }}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The port of prometheus.url (the scheme's default when it names none), for the NetworkPolicy.
*/}}
{{- define "predictive-autoscaler.prometheusPort" -}}
{{- $url := urlParse .Values.prometheus.url -}}
{{- $parts := splitList ":" $url.host -}}
{{- if and (gt (len $parts) 1) (not (hasSuffix "]" $url.host)) -}}
{{- last $parts -}}
{{- else if eq $url.scheme "https" -}}
443
{{- else -}}
80
{{- end -}}
{{- end -}}

{{/*
Exactly the requests the controller makes, cluster-wide (ClusterRole) or per watched namespace
(Role): the rules of deploy/rbac.yaml, which tests/test_rbac.py checks against the controller.
*/}}
{{- define "predictive-autoscaler.rules" -}}
# Opted-in Deployments and StatefulSets: watched, annotated with the last decision, scaled in
# mode `replicas`, read again before their HPA's floor is moved in mode `hpa`.
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["apps"]
  resources: ["deployments/scale", "statefulsets/scale"]
  verbs: ["patch"]
# HPAs: watched (an HPA on a workload refuses mode `replicas`), floor moved in mode `hpa`.
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["list", "watch", "patch"]
# Pods: their creation-to-Ready time is the measured start-up.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
# Events that explain each decision.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end -}}
