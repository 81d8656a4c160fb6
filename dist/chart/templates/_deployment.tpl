{{/*
One manager Deployment: the main instance (shard "") or one shard of sharding.shards. Both run the same
Pod; a shard's serves only the objects labelled <sharding.key>=<shard> and elects its leader through its
own Lease, and the main instance, once shards are listed, serves only the objects without the label.
Takes (dict "root" . "shard" name "sharded" bool), sharded telling whether sharding.shards lists any.
*/}}
{{- define "webhook-operator.deployment" -}}
{{- $root := .root }}
{{- $shard := .shard }}
{{- $values := $root.Values -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "webhook-operator.fullname" $root }}-controller-manager{{ include "webhook-operator.shardSuffix" . }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "webhook-operator.managerLabels" . | nindent 4 }}
spec:
  replicas: {{ $values.replicaCount | int }}
  selector:
    matchLabels:
      {{- include "webhook-operator.managerSelectorLabels" . | nindent 6 }}
  template:
    metadata:
      annotations:
        kubectl.kubernetes.io/default-container: manager
        {{- with $values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      labels:
        {{- include "webhook-operator.managerSelectorLabels" . | nindent 8 }}
        {{- with $values.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      # The "restricted" Pod Security Standard, as in config/manager/manager.yaml.
      securityContext:
        runAsNonRoot: true
        seccompProfile:
          type: RuntimeDefault
      serviceAccountName: {{ include "webhook-operator.serviceAccountName" $root }}
      # Above --graceful-shutdown-timeout (70s), so attempts in flight are recorded on SIGTERM.
      terminationGracePeriodSeconds: {{ $values.terminationGracePeriodSeconds | int }}
      {{- with $values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
      - name: manager
        image: {{ include "webhook-operator.image" $root }}
        imagePullPolicy: {{ $values.image.pullPolicy }}
        command:
        - /manager
        args:
        {{- if $values.leaderElection.enabled }}
        - --leader-elect
        {{- if $shard }}
        # The shard's own Lease; the main instance keeps the default one.
        - --leader-election-id={{ include "webhook-operator.fullname" $root }}-{{ $shard }}
        {{- end }}
        {{- end }}
        - --health-probe-bind-address=:8081
        {{- if $values.metrics.enabled }}
        - --metrics-bind-address=:{{ $values.metrics.port | int }}
        - --metrics-secure={{ $values.metrics.secure }}
        {{- else }}
        - --metrics-bind-address=0
        {{- end }}
        {{- with $values.maxInFlight }}
        - --max-in-flight={{ . | int }}
        {{- end }}
        {{- with $values.watchNamespaces }}
        - --watch-namespaces={{ join "," . }}
        {{- end }}
        {{- if $shard }}
        - {{ printf "--watch-label-selector=%s=%s" $values.sharding.key $shard | quote }}
        {{- else if .sharded }}
        # The objects without the shard label stay on the main instance.
        - {{ printf "--watch-label-selector=!%s" $values.sharding.key | quote }}
        {{- end }}
        {{- with $values.egress.blockedCIDRs }}
        - --blocked-cidrs={{ join "," . }}
        {{- end }}
        {{- with $values.egress.allowedCIDRs }}
        - --allowed-cidrs={{ join "," . }}
        {{- end }}
        - --block-private-networks={{ $values.egress.blockPrivateNetworks }}
        {{- with $values.egress.privateCIDRs }}
        - --private-cidrs={{ join "," . }}
        {{- end }}
        - --require-https={{ $values.requireHTTPS }}
        {{- with $values.defaultTTLAfterFinished }}
        - --default-ttl-after-finished={{ . }}
        {{- end }}
        {{- range $values.extraArgs }}
        - {{ . | quote }}
        {{- end }}
        {{- with $values.tracing }}
        {{- if .otlpEndpoint }}
        env:
        - name: OTEL_EXPORTER_OTLP_ENDPOINT
          value: {{ .otlpEndpoint | quote }}
        - name: OTEL_EXPORTER_OTLP_PROTOCOL
          value: {{ .protocol | quote }}
        {{- range $name, $value := .env }}
        - name: {{ $name }}
          value: {{ $value | quote }}
        {{- end }}
        {{- end }}
        {{- end }}
        ports:
        {{- if $values.metrics.enabled }}
        - containerPort: {{ $values.metrics.port | int }}
          name: {{ include "webhook-operator.metricsPortName" $root }}
          protocol: TCP
        {{- end }}
        - containerPort: 8081
          name: probes
          protocol: TCP
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          runAsNonRoot: true
          runAsUser: 65532
          capabilities:
            drop:
            - "ALL"
        livenessProbe:
          httpGet:
            path: /healthz
            port: 8081
          initialDelaySeconds: 15
          periodSeconds: 20
        readinessProbe:
          httpGet:
            path: /readyz
            port: 8081
          initialDelaySeconds: 5
          periodSeconds: 10
        {{- with $values.resources }}
        resources:
          {{- toYaml . | nindent 10 }}
        {{- end }}
      {{- with $values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $values.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end }}
