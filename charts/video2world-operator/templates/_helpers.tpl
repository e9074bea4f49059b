{{/* Names and labels shared by every template. */}}

{{- define "v2w.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's full name; the release name alone when it already contains the chart name. */}}
{{- define "v2w.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "v2w.selectorLabels" -}}
app.kubernetes.io/name: {{ include "v2w.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "v2w.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "v2w.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: video2world
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "v2w.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "v2w.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "v2w.operatorImage" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "v2w.runtimeImage" -}}
{{- printf "%s:%s" .Values.runtime.image.repository (default .Chart.AppVersion .Values.runtime.image.tag) -}}
{{- end -}}

{{/* "true" when the backend may be PyTorchJob (pytorchjob, or auto). */}}
{{- define "v2w.pytorchjobBackend" -}}
{{- if has .Values.backend (list "pytorchjob" "auto") -}}true{{- end -}}
{{- end -}}

{{/* "true" when the backend may be TrainJob (trainjob, or auto). */}}
{{- define "v2w.trainjobBackend" -}}
{{- if has .Values.backend (list "trainjob" "auto") -}}true{{- end -}}
{{- end -}}

{{/* The ClusterTrainingRuntime the TrainJobs reference (cluster-scoped: one per release). */}}
{{- define "v2w.trainingRuntimeName" -}}
{{- default (include "v2w.fullname" .) .Values.trainer.runtimeName -}}
{{- end -}}

{{/* "true" when the operator watches every namespace (no watchNamespaces given). */}}
{{- define "v2w.clusterMode" -}}
{{- if not .Values.watchNamespaces -}}true{{- end -}}
{{- end -}}

{{/*
The rules the operator needs inside a namespace it watches (a ClusterRole in cluster mode, a Role per
namespace otherwise). Keep in step with the operator's API calls and with tests/chart/test_rbac.py.
*/}}
{{- define "v2w.namespacedRules" -}}
- apiGroups: [video2world.io]
  resources: [video2worldjobs, bestofnjobs]
  verbs: [get, list, watch, patch]
- apiGroups: [video2world.io]
  resources: [video2worldjobs/status, bestofnjobs/status]
  verbs: [get, patch]
# Pools of warm workers: watched like the jobs; the status is the operator's.
- apiGroups: [video2world.io]
  resources: [video2worldpools]
  verbs: [get, list, watch, patch]
- apiGroups: [video2world.io]
  resources: [video2worldpools/status]
  verbs: [get, patch]
# A pool's workers: its Deployment, ServiceAccount and RoleBinding, server-side applied (create, patch) and read
# (get); deletion is the garbage collector's, through the owner reference.
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, create, patch]
- apiGroups: [""]
  resources: [serviceaccounts]
  verbs: [get, create, patch]
- apiGroups: [rbac.authorization.k8s.io]
  resources: [rolebindings]
  verbs: [get, create, patch]
# Each pool's RoleBinding may give its workers the worker role, and no other role.
- apiGroups: [rbac.authorization.k8s.io]
  resources: [clusterroles]
  verbs: [bind]
  resourceNames: [{{ include "v2w.poolWorkerRole" . | quote }}]
# A pooled job's claim: created with the job's run (create), watched for its state (list, watch, get), and
# annotated (patch) with the job's suspend and, past its backoff limit, its outcome.
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [get, list, watch, create, patch]
# The jobs' children, of the backend's kind only: list/watch (one watch follows them all, selected by the
# managed-by label), get (a job the watch has not seen yet), create (once, deterministic name), patch (suspend,
# and the Kueue queue label on resume); deletion is the garbage collector's, through the owner reference.
{{- if include "v2w.pytorchjobBackend" . }}
- apiGroups: [kubeflow.org]
  resources: [pytorchjobs]
  verbs: [get, list, watch, create, patch]
{{- end }}
{{- if include "v2w.trainjobBackend" . }}
- apiGroups: [trainer.kubeflow.org]
  resources: [trainjobs]
  verbs: [get, list, watch, create, patch]
{{- end }}
# Kueue (when installed): list/watch its Workloads (why a queued job waits), get one the watch has not seen,
# and patch spec.active, Kueue's way to stop and requeue a job it manages (a user's spec.suspend). Nothing else:
# the queue, its quota and admission are Kueue's.
- apiGroups: [kueue.x-k8s.io]
  resources: [workloads]
  verbs: [get, list, watch, patch]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
{{- with .Values.rbac.secretNames }}
  resourceNames:
  {{- range (concat . (compact (list $.Values.s3.credentialsSecret)) | uniq) }}
  - {{ . | quote }}
  {{- end }}
{{- end }}
# get: the claims a job's pvc:// URIs name are looked up before its PyTorchJob is made (ClaimMissing).
- apiGroups: [""]
  resources: [persistentvolumeclaims]
  verbs: [get]
# kopf 1.45 posts core/v1 Events and only creates them.
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end -}}

{{/* The ClusterRole each pool's RoleBinding gives its workers. */}}
{{- define "v2w.poolWorkerRole" -}}
{{- printf "%s-pool-worker" (include "v2w.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* kopf scans and watches CRDs cluster-wide; the operator also reports a missing child CRD, and with backend
auto reads which child CRD is served. */}}
{{- define "v2w.crdRules" -}}
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [get, list, watch]
{{- end -}}

{{/*
Namespaced mode only: kopf lists and watches namespaces to match its --namespace patterns. Without it,
kopf retries the refused list for about a minute before it serves any job, then falls back.
*/}}
{{- define "v2w.namespaceRules" -}}
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
{{- end -}}

{{/* "true" when the replicas elect the acting one through kopf peering (more than one, or asked for). */}}
{{- define "v2w.peering" -}}
{{- if or .Values.peering.enabled (gt (int .Values.replicas) 1) -}}true{{- end -}}
{{- end -}}

{{- define "v2w.peeringName" -}}
{{- default (include "v2w.fullname" .) .Values.peering.name -}}
{{- end -}}

{{/*
With peering: kopf watches its peering kind (list, watch) and patches its own keep-alive into the one object
(patch, by name); it never creates or deletes it (the chart does).
*/}}
{{- define "v2w.peeringRules" -}}
- apiGroups: [kopf.dev]
  resources: [{{ if include "v2w.clusterMode" . }}clusterkopfpeerings{{ else }}kopfpeerings{{ end }}]
  verbs: [list, watch]
- apiGroups: [kopf.dev]
  resources: [{{ if include "v2w.clusterMode" . }}clusterkopfpeerings{{ else }}kopfpeerings{{ end }}]
  resourceNames: [{{ include "v2w.peeringName" . | quote }}]
  verbs: [patch]
{{- end -}}
