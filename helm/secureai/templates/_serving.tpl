{{/* Volumes and mounts shared by the pipeline and the API: config, Kafka/Triton TLS */}}
{{- define "secureai.tlsMounts" -}}
{{- if .Values.kafka.tls.existingSecret }}
- {name: kafka-tls, mountPath: /etc/secureai/kafka-tls, readOnly: true}
{{- end }}
{{- if .Values.triton.grpcTls.existingSecret }}
- {name: triton-tls, mountPath: /etc/secureai/triton-tls, readOnly: true}
{{- end }}
{{- end -}}

{{- define "secureai.tlsVolumes" -}}
{{- if .Values.kafka.tls.existingSecret }}
- name: kafka-tls
  secret: {secretName: {{ .Values.kafka.tls.existingSecret }}}
{{- end }}
{{- if .Values.triton.grpcTls.existingSecret }}
- name: triton-tls
  secret: {secretName: {{ .Values.triton.grpcTls.existingSecret }}, items: [{key: ca.crt, path: ca.crt}]}
{{- end }}
{{- end -}}

{{- define "secureai.configVolume" -}}
- name: config
  configMap: {name: {{ include "secureai.component" (list . "config") }}}
{{- end -}}
