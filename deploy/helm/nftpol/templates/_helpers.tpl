{{/* The labels every object carries. */}}
{{- define "nftpol.labels" -}}
app.kubernetes.io/name: nftpol
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{/* The labels the DaemonSet and Service select on. */}}
{{- define "nftpol.selectorLabels" -}}
app.kubernetes.io/name: nftpol
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The ClusterRole and its binding are cluster-wide: named per release. */}}
{{- define "nftpol.clusterName" -}}
{{- if eq .Release.Name "nftpol" }}nftpol{{ else }}{{ printf "nftpol-%s" .Release.Name | trunc 63 }}{{ end }}
{{- end }}
