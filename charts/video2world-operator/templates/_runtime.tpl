{{/*
The runtime pods of the operator's jobs, by the labels v2w_operator/backends/child.py puts on every pod template
(tests/chart/test_runtime_networkpolicy.py keeps the two in step).
*/}}
{{- define "v2w.runtimePodSelector" -}}
matchLabels:
  app.kubernetes.io/managed-by: video2world-operator
matchExpressions:
  - key: video2world.io/job-name
    operator: Exists
{{- end -}}
