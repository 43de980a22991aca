{{/*
Names, labels and shared fragments of the ohttp-gateway chart.
*/}}

{{- define "ohttp-gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ohttp-gateway.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "ohttp-gateway.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ohttp-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ohttp-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ohttp-gateway.labels" -}}
helm.sh/chart: {{ include "ohttp-gateway.chart" . }}
{{ include "ohttp-gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ohttp-gateway
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The helm test pod: labels that the Deployment, Service and PDB selectors never match. */}}
{{- define "ohttp-gateway.testSelectorLabels" -}}
app.kubernetes.io/name: {{ include "ohttp-gateway.name" . }}-test
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ohttp-gateway.testLabels" -}}
helm.sh/chart: {{ include "ohttp-gateway.chart" . }}
{{ include "ohttp-gateway.testSelectorLabels" . }}
app.kubernetes.io/component: test
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "ohttp-gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ohttp-gateway.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* An image reference: repository@digest when a digest is set, else repository:tag. */}}
{{- define "ohttp-gateway.image" -}}
{{- $image := index . 0 }}
{{- $defaultTag := index . 1 }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository (default $defaultTag $image.tag) }}
{{- end }}
{{- end }}

{{/* The Kubernetes versions the monitoring kinds need, checked by kind. */}}
{{- define "ohttp-gateway.hasMonitoringKind" -}}
{{- $root := index . 0 }}
{{- $kind := index . 1 }}
{{- if $root.Capabilities.APIVersions.Has (printf "monitoring.coreos.com/v1/%s" $kind) }}true{{ end }}
{{- end }}

{{/*
Render-time guards: configurations that must never reach a cluster.
*/}}
{{- define "ohttp-gateway.validate" -}}
{{- $gw := .Values.gateway }}
{{- if $gw.dev.enabled }}
{{- $maxReplicas := int .Values.replicaCount }}
{{- if .Values.autoscaling.enabled }}{{ $maxReplicas = int .Values.autoscaling.maxReplicas }}{{ end }}
{{- if and (gt $maxReplicas 1) (not $gw.dev.seedSecret.name) }}
{{- fail "gateway.dev.enabled with more than one replica needs gateway.dev.seedSecret.name: every replica must serve identical keys (RFC 9458 section 7)" }}
{{- end }}
{{- else }}
{{- if eq $gw.kms.backend "dev" }}
{{- fail "gateway.kms.backend=dev is allowed only with gateway.dev.enabled=true" }}
{{- end }}
{{- if eq $gw.attestation.evidenceProvider "simulated" }}
{{- fail "gateway.attestation.evidenceProvider=simulated is allowed only with gateway.dev.enabled=true" }}
{{- end }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled .Values.metrics.podMonitor.enabled }}
{{- fail "metrics.serviceMonitor.enabled and metrics.podMonitor.enabled: enable one of them, not both" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (lt (int .Values.autoscaling.maxReplicas) (int .Values.autoscaling.minReplicas)) }}
{{- fail "autoscaling.maxReplicas must be at least autoscaling.minReplicas" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (eq (int .Values.autoscaling.targetCPUUtilizationPercentage) 0) (eq (int .Values.autoscaling.targetInFlightRequests) 0) }}
{{- fail "autoscaling.enabled needs targetCPUUtilizationPercentage or targetInFlightRequests" }}
{{- end }}
{{- end }}

{{/* The gateway's environment: the contract of docs/configuration.md. */}}
{{- define "ohttp-gateway.gatewayEnv" -}}
{{- $gw := .Values.gateway -}}
- name: OHTTP_GATEWAY_HOST
  value: "0.0.0.0"
- name: OHTTP_GATEWAY_PORT
  value: {{ $gw.port | quote }}
- name: OHTTP_GATEWAY_METRICS_PORT
  value: {{ $gw.metricsPort | quote }}
- name: OHTTP_GATEWAY_WORKERS
  value: {{ $gw.workers | quote }}
- name: OHTTP_GATEWAY_UPSTREAM
  value: {{ printf "http://127.0.0.1:%d" (int .Values.whisper.port) | quote }}
{{- with $gw.allowedPaths }}
- name: OHTTP_GATEWAY_ALLOWED_PATHS
  value: {{ join "," . | quote }}
{{- end }}
- name: OHTTP_GATEWAY_MAX_BODY_BYTES
  value: {{ int64 $gw.limits.maxBodyBytes | quote }}
- name: OHTTP_GATEWAY_MAX_CONCURRENCY
  value: {{ $gw.limits.maxConcurrency | quote }}
- name: OHTTP_GATEWAY_UPSTREAM_CONNECT_TIMEOUT
  value: {{ $gw.limits.upstreamConnectTimeout | quote }}
- name: OHTTP_GATEWAY_UPSTREAM_READ_TIMEOUT
  value: {{ $gw.limits.upstreamReadTimeout | quote }}
- name: OHTTP_GATEWAY_REPLAY_WINDOW
  value: {{ $gw.limits.replayWindow | quote }}
- name: OHTTP_GATEWAY_REPLAY_CAPACITY
  value: {{ int64 $gw.limits.replayCapacity | quote }}
- name: OHTTP_GATEWAY_DRAIN_TIMEOUT
  value: {{ $gw.limits.drainTimeout | quote }}
- name: OHTTP_GATEWAY_BODY_IDLE_TIMEOUT
  value: {{ $gw.limits.bodyIdleTimeout | quote }}
- name: OHTTP_GATEWAY_BODY_MIN_RATE
  value: {{ int64 $gw.limits.bodyMinRate | quote }}
- name: OHTTP_GATEWAY_BODY_RATE_GRACE
  value: {{ $gw.limits.bodyRateGrace | quote }}
- name: OHTTP_GATEWAY_KEY_AGREEMENT
  value: {{ $gw.keyAgreement | quote }}
- name: OHTTP_GATEWAY_LOG_LEVEL
  value: {{ $gw.logLevel | quote }}
- name: OHTTP_GATEWAY_DEV
  value: {{ $gw.dev.enabled | quote }}
{{- if and $gw.dev.enabled $gw.dev.seedSecret.name }}
- name: OHTTP_GATEWAY_DEV_SEED
  valueFrom:
    secretKeyRef:
      name: {{ $gw.dev.seedSecret.name }}
      key: {{ $gw.dev.seedSecret.key }}
{{- end }}
- name: OHTTP_GATEWAY_EVIDENCE_PROVIDER
  value: {{ $gw.attestation.evidenceProvider | quote }}
{{- $device := .Values.attestationDevice }}
{{- if and (ne $device.mode "none") (eq $gw.attestation.evidenceProvider "azure-vtpm") }}
- name: OHTTP_GATEWAY_TPM_TCTI
  value: {{ printf "device:%s" $device.path | quote }}
{{- end }}
{{- if and (ne $device.mode "none") (eq $gw.attestation.evidenceProvider "sev-guest") }}
- name: OHTTP_GATEWAY_SEV_GUEST_DEVICE
  value: {{ $device.path | quote }}
{{- end }}
{{- with $gw.attestation.maaUrl }}
- name: OHTTP_GATEWAY_MAA_URL
  value: {{ . | quote }}
{{- end }}
- name: OHTTP_GATEWAY_KMS_BACKEND
  value: {{ $gw.kms.backend | quote }}
{{- if eq $gw.kms.backend "akv" }}
{{- with $gw.kms.akv.vaultUrl }}
- name: OHTTP_GATEWAY_AKV_VAULT_URL
  value: {{ . | quote }}
{{- end }}
{{- with $gw.kms.akv.keyName }}
- name: OHTTP_GATEWAY_AKV_KEY_NAME
  value: {{ . | quote }}
{{- end }}
{{- if not (kindIs "invalid" $gw.kms.akv.keyId) }}
- name: OHTTP_GATEWAY_AKV_KEY_ID
  value: {{ $gw.kms.akv.keyId | int | toString | quote }}
{{- end }}
{{- end }}
{{- if eq $gw.kms.backend "ccf" }}
{{- with $gw.kms.ccf.url }}
- name: OHTTP_GATEWAY_CCF_URL
  value: {{ . | quote }}
{{- end }}
{{- if $gw.kms.ccf.serviceCertSecret.name }}
- name: OHTTP_GATEWAY_CCF_SERVICE_CERT
  value: {{ printf "/etc/ohttp-gateway/kms/%s" $gw.kms.ccf.serviceCertSecret.key | quote }}
{{- end }}
{{- end }}
{{- if $gw.caBundle.configMap }}
- name: OHTTP_GATEWAY_CA_BUNDLE
  value: {{ printf "/etc/ohttp-gateway/ca/%s" $gw.caBundle.key | quote }}
{{- end }}
{{- if $gw.kubernetesEvents.enabled }}
- name: OHTTP_GATEWAY_KUBERNETES_EVENTS
  value: "on"
- name: OHTTP_GATEWAY_POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: OHTTP_GATEWAY_POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
{{- end }}
{{- with $gw.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The gateway container; restartPolicy Always makes it a native sidecar. */}}
{{- define "ohttp-gateway.gatewayContainer" -}}
{{- $gw := .Values.gateway -}}
{{- $dev := .Values.attestationDevice -}}
- name: gateway
  image: {{ include "ohttp-gateway.image" (list $gw.image .Chart.AppVersion) | quote }}
  imagePullPolicy: {{ $gw.image.pullPolicy }}
  {{- if $gw.nativeSidecar }}
  restartPolicy: Always
  {{- end }}
  args: ["serve"]
  ports:
    - name: gateway
      containerPort: {{ $gw.port }}
      protocol: TCP
    - name: metrics
      containerPort: {{ $gw.metricsPort }}
      protocol: TCP
  env:
    {{- include "ohttp-gateway.gatewayEnv" . | nindent 4 }}
  startupProbe:
    httpGet:
      path: /readyz
      port: gateway
    periodSeconds: {{ $gw.startupProbe.periodSeconds }}
    failureThreshold: {{ $gw.startupProbe.failureThreshold }}
    timeoutSeconds: {{ $gw.startupProbe.timeoutSeconds }}
  readinessProbe:
    httpGet:
      path: /readyz
      port: gateway
    periodSeconds: {{ $gw.readinessProbe.periodSeconds }}
    failureThreshold: {{ $gw.readinessProbe.failureThreshold }}
    timeoutSeconds: {{ $gw.readinessProbe.timeoutSeconds }}
  livenessProbe:
    httpGet:
      path: /livez
      port: gateway
    periodSeconds: {{ $gw.livenessProbe.periodSeconds }}
    failureThreshold: {{ $gw.livenessProbe.failureThreshold }}
    timeoutSeconds: {{ $gw.livenessProbe.timeoutSeconds }}
  resources:
    {{- $resources := deepCopy $gw.resources }}
    {{- if eq $dev.mode "devicePlugin" }}
    {{- $limits := default dict $resources.limits }}
    {{- $_ := set $limits $dev.resourceName 1 }}
    {{- $_ := set $resources "limits" $limits }}
    {{- end }}
    {{- toYaml $resources | nindent 4 }}
  securityContext:
    {{- if eq $dev.mode "hostPath" }}
    {{- /* The device cgroup admits a hostPath device node only in a privileged container. */}}
    {{- $sc := omit $gw.securityContext "privileged" "allowPrivilegeEscalation" }}
    {{- toYaml $sc | nindent 4 }}
    privileged: true
    allowPrivilegeEscalation: true
    {{- else }}
    {{- toYaml $gw.securityContext | nindent 4 }}
    {{- end }}
  volumeMounts:
    - name: gateway-tmp
      mountPath: /tmp
    {{- if eq $dev.mode "hostPath" }}
    - name: attestation-device
      mountPath: {{ $dev.path }}
    {{- end }}
    {{- if and (eq $gw.kms.backend "ccf") $gw.kms.ccf.serviceCertSecret.name }}
    - name: kms-service-cert
      mountPath: /etc/ohttp-gateway/kms
      readOnly: true
    {{- end }}
    {{- if $gw.caBundle.configMap }}
    - name: ca-bundle
      mountPath: /etc/ohttp-gateway/ca
      readOnly: true
    {{- end }}
    {{- if $gw.kubernetesEvents.enabled }}
    - name: kube-api-access
      mountPath: /var/run/secrets/kubernetes.io/serviceaccount
      readOnly: true
    {{- end }}
{{- end }}
