{{/*
The Pod template shared by the Deployment and the DaemonSet.
*/}}
{{- define "tcs.podTemplate" -}}
{{- $v := .Values -}}
{{- $files := eq $v.credentials.source "files" -}}
metadata:
  labels:
    {{- include "tcs.selectorLabels" . | nindent 4 }}
    {{- with $v.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $v.podAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  serviceAccountName: {{ include "tcs.serviceAccountName" . }}
  automountServiceAccountToken: {{ include "tcs.automountToken" . }}
  enableServiceLinks: false
  terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
  {{- with $v.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- with $v.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml $v.podSecurityContext | nindent 4 }}
  containers:
    - name: talos-csr-signer
      image: {{ include "tcs.image" . }}
      imagePullPolicy: {{ $v.image.pullPolicy }}
      {{- with $v.extraArgs }}
      args:
        {{- range . }}
        - {{ toString . | quote }}
        {{- end }}
      {{- end }}
      ports:
        - name: grpc
          containerPort: {{ $v.ports.grpc }}
          protocol: TCP
          {{- if and (eq $v.mode "daemonset") $v.daemonset.hostPort }}
          hostPort: {{ $v.service.port }}
          {{- end }}
        - name: http
          containerPort: {{ $v.ports.http }}
          protocol: TCP
      env:
        - name: PORT
          value: {{ $v.ports.grpc | quote }}
        - name: HTTP_ADDR
          value: {{ printf ":%v" $v.ports.http | quote }}
        {{- if $files }}
        - name: CA_CERT_PATH
          value: /etc/talos-ca/tls.crt
        - name: CA_KEY_PATH
          value: /etc/talos-ca/tls.key
        - name: TOKEN_PATH
          value: /etc/talos-ca/token
        {{- if $v.credentials.acceptedCAs }}
        - name: ACCEPTED_CAS_PATH
          value: /etc/talos-ca/accepted-cas.crt
        {{- end }}
        - name: TLS_CERT_PATH
          value: /etc/talos-server-crt/tls.crt
        - name: TLS_KEY_PATH
          value: /etc/talos-server-crt/tls.key
        {{- else }}
        - name: CA_SECRET
          value: {{ printf "%s/%s" (include "tcs.caSecretNamespace" .) $v.credentials.caSecret.name | quote }}
        - name: TLS_SECRET
          value: {{ printf "%s/%s" (include "tcs.tlsSecretNamespace" .) (include "tcs.tlsSecretName" .) | quote }}
        {{- end }}
        - name: POD_NAME
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        - name: POD_NAMESPACE
          valueFrom:
            fieldRef:
              fieldPath: metadata.namespace
        - name: POD_UID
          valueFrom:
            fieldRef:
              fieldPath: metadata.uid
        {{- range $key, $env := dict "logFormat" "LOG_FORMAT" "logLevel" "LOG_LEVEL" "certTTL" "CERT_TTL" "certBackdate" "CERT_BACKDATE" "maxConnectionAge" "MAX_CONNECTION_AGE" "shutdownGrace" "SHUTDOWN_GRACE" "grpcThreads" "GRPC_THREADS" "listenAddress" "LISTEN_ADDRESS" "maxCsrBytes" "MAX_CSR_BYTES" "maxSans" "MAX_SANS" "allowedKeyTypes" "ALLOWED_KEY_TYPES" "minRsaBits" "MIN_RSA_BITS" "requirePeerIpSan" "REQUIRE_PEER_IP_SAN" "rateLimitRps" "RATE_LIMIT_RPS" "rateLimitBurst" "RATE_LIMIT_BURST" }}
        {{- $val := index $v.config $key }}
        {{- if not (or (kindIs "invalid" $val) (eq (toString $val) "")) }}
        - name: {{ $env }}
          value: {{ toString $val | quote }}
        {{- end }}
        {{- end }}
        {{- with $v.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with $v.envFrom }}
      envFrom:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- if semverCompare ">=1.30-0" .Capabilities.KubeVersion.Version }}
      # The daemon closes its listener on SIGTERM. Until kube-proxy has dropped this Pod from the
      # Service, new connections would still be sent here and refused: tests/cluster step 6 saw
      # 1045 of 2526 worker calls refused during a rolling update without this, none with it.
      # (The sleep action is built in from Kubernetes 1.30; the image needs no shell.)
      lifecycle:
        preStop:
          sleep:
            seconds: 5
      {{- end }}
      startupProbe:
        httpGet:
          path: /healthz
          port: http
        periodSeconds: {{ $v.probes.startup.periodSeconds }}
        timeoutSeconds: {{ $v.probes.startup.timeoutSeconds }}
        failureThreshold: {{ $v.probes.startup.failureThreshold }}
      livenessProbe:
        httpGet:
          path: /healthz
          port: http
        initialDelaySeconds: {{ $v.probes.liveness.initialDelaySeconds }}
        periodSeconds: {{ $v.probes.liveness.periodSeconds }}
        timeoutSeconds: {{ $v.probes.liveness.timeoutSeconds }}
        failureThreshold: {{ $v.probes.liveness.failureThreshold }}
      readinessProbe:
        httpGet:
          path: /readyz
          port: http
        initialDelaySeconds: {{ $v.probes.readiness.initialDelaySeconds }}
        periodSeconds: {{ $v.probes.readiness.periodSeconds }}
        timeoutSeconds: {{ $v.probes.readiness.timeoutSeconds }}
        failureThreshold: {{ $v.probes.readiness.failureThreshold }}
      {{- with $v.resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml $v.securityContext | nindent 8 }}
      {{- if or $files $v.extraVolumeMounts }}
      volumeMounts:
        {{- if $files }}
        - name: talos-ca
          mountPath: /etc/talos-ca
          readOnly: true
        - name: serving-cert
          mountPath: /etc/talos-server-crt
          readOnly: true
        {{- end }}
        {{- with $v.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- end }}
  {{- if or $files $v.extraVolumes }}
  volumes:
  {{- end }}
  {{- if $files }}
    # Whole-Secret mounts (no subPath): the kubelet swaps the ..data symlink on
    # every change and the daemon reloads through inotify.
    - name: talos-ca
      secret:
        secretName: {{ $v.credentials.caSecret.name }}
        defaultMode: 0440
    - name: serving-cert
      secret:
        secretName: {{ include "tcs.tlsSecretName" . }}
        defaultMode: 0440
  {{- end }}
  {{- with $v.extraVolumes }}
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if eq $v.mode "daemonset" }}
  {{- with $v.daemonset.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.daemonset.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- else }}
  {{- with $v.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- range . }}
    {{- $c := deepCopy . }}
    {{- if not (hasKey $c "labelSelector") }}
    {{- $_ := set $c "labelSelector" (dict "matchLabels" (include "tcs.selectorLabels" $ | fromYaml)) }}
    {{- end }}
    - {{ toYaml $c | nindent 6 | trim }}
    {{- end }}
  {{- end }}
  {{- end }}
  {{- with $v.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
