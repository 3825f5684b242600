{{/* Names and labels */}}
{{- define "secureai.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "secureai.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "secureai.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "secureai.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* secureai.component: "<fullname>-<component>" ; call with (list $ "api") */}}
{{- define "secureai.component" -}}
{{- $root := index . 0 -}}
{{- printf "%s-%s" (include "secureai.fullname" $root) (index . 1) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "secureai.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "secureai.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "secureai.labels" -}}
{{- $root := index . 0 -}}
{{ include "secureai.selectorLabels" . }}
app.kubernetes.io/part-of: secureai
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" $root.Chart.Name $root.Chart.Version }}
{{- end -}}

{{/* secureai.image: (list $ "pipeline") */}}
{{- define "secureai.image" -}}
{{- $img := index (index . 0).Values.images (index . 1) -}}
{{- printf "%s:%s" $img.repository $img.tag -}}
{{- end -}}

{{- define "secureai.pullPolicy" -}}
{{- (index (index . 0).Values.images (index . 1)).pullPolicy -}}
{{- end -}}

{{/* Prometheus scrape annotations: (list $ port "/metrics") */}}
{{- define "secureai.scrapeAnnotations" -}}
{{- $root := index . 0 -}}
{{- if $root.Values.monitoring.scrapeAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ index . 1 | quote }}
prometheus.io/path: {{ index . 2 | quote }}
{{- end -}}
{{- end -}}

{{/* Kafka bootstrap servers: the values' or the in-chart Redpanda's */}}
{{- define "secureai.kafkaBootstrap" -}}
{{- if .Values.kafka.bootstrapServers -}}
{{- .Values.kafka.bootstrapServers -}}
{{- else if .Values.redpanda.enabled -}}
{{- printf "%s:9092" (include "secureai.component" (list . "redpanda")) -}}
{{- else -}}
{{- fail "kafka.bootstrapServers is empty and redpanda.enabled is false: name a Kafka cluster" -}}
{{- end -}}
{{- end -}}

{{- define "secureai.tritonUrl" -}}
{{- printf "%s:8001" (include "secureai.component" (list . "triton")) -}}
{{- end -}}

{{- define "secureai.superlinkAddress" -}}
{{- printf "%s:%v" (include "secureai.component" (list . "superlink")) .Values.fl.superlink.port -}}
{{- end -}}

{{- define "secureai.apiTokenSecret" -}}
{{- default (include "secureai.component" (list . "api-token")) .Values.api.auth.existingSecret -}}
{{- end -}}

{{- define "secureai.flTlsSecret" -}}
{{- default (include "secureai.component" (list . "fl-tls")) .Values.fl.tls.existingSecret -}}
{{- end -}}

{{/* Inference section shared by the pipeline and the API (Triton over gRPC, optional TLS) */}}
{{- define "secureai.inference" -}}
{{- $root := index . 0 -}}
{{- $inf := dict "engine" "triton" "url" (include "secureai.tritonUrl" $root) "protocol" "grpc" "model" "dfp_ensemble" -}}
{{- if $root.Values.triton.grpcTls.existingSecret -}}
{{- $_ := set $inf "tls" (dict "root_certificates" "/etc/secureai/triton-tls/ca.crt") -}}
{{- end -}}
{{- toYaml (merge (index . 1) $inf) -}}
{{- end -}}

{{/* The pipeline's config (pipelines/kafka/config.py) */}}
{{- define "secureai.pipelineConfig" -}}
{{- $k := .Values.kafka -}}
{{- $common := dict -}}
{{- if ne $k.securityProtocol "PLAINTEXT" -}}
{{- $_ := set $common "security.protocol" $k.securityProtocol -}}
{{- end -}}
{{- if hasPrefix "SASL" $k.securityProtocol -}}
{{- if not (and $k.sasl.username $k.sasl.existingSecret) -}}
{{- fail "kafka.securityProtocol SASL_* needs kafka.sasl.username and kafka.sasl.existingSecret" -}}
{{- end -}}
{{- $_ := set $common "sasl.mechanism" $k.sasl.mechanism -}}
{{- $_ := set $common "sasl.username" $k.sasl.username -}}
{{- $_ := set $common "sasl.password" "${KAFKA_PASSWORD}" -}}
{{- end -}}
{{- if $k.tls.existingSecret -}}
{{- $_ := set $common "ssl.ca.location" "/etc/secureai/kafka-tls/ca.crt" -}}
{{- end -}}
{{- $kafka := dict "bootstrap_servers" (include "secureai.kafkaBootstrap" .) "topics" (list $k.topics.events) "group_id" $k.groupId "scores_topic" $k.topics.scores "dead_letter_topic" $k.topics.deadLetters "exactly_once" $k.exactlyOnce "batch_size" .Values.pipeline.batchSize "common" $common "consumer" $k.consumer "producer" $k.producer -}}
{{- $inference := include "secureai.inference" (list . (dict "connect_timeout_s" .Values.pipeline.connectTimeoutS "max_outage_s" .Values.pipeline.maxOutageS)) | fromYaml -}}
{{- $_ := set $kafka "incidents_topic" $k.topics.incidents -}}
{{- $_ := set $kafka "correlation_topic" $k.topics.correlation -}}
{{- $_ := set $kafka "campaigns_topic" $k.topics.campaigns -}}
{{- $p := .Values.pipeline -}}
{{- $incidents := mergeOverwrite (deepCopy $p.incidents) (dict "site" ($p.incidents.site | default .Release.Name) "checkpoint_path" "/var/lib/secureai/incidents-{instance}.json" "instance_id" "${POD_NAME}") -}}
{{- if and $p.correlation.enabled (not (and $incidents.enabled .Values.correlator.enabled .Values.correlator.keySecret.existingSecret)) -}}
{{- fail "pipeline.correlation.enabled needs pipeline.incidents.enabled, correlator.enabled and correlator.keySecret.existingSecret" -}}
{{- end -}}
{{- toYaml (dict "name" "kafka-scoring" "spec" .Values.spec "kafka" $kafka "inference" $inference "metrics_port" .Values.pipeline.metricsPort "metrics_host" "0.0.0.0" "incidents" $incidents "leakage" $p.leakage "correlation" $p.correlation) -}}
{{- end -}}

{{/* The correlator's config (pipelines/correlate.py) */}}
{{- define "secureai.correlatorConfig" -}}
{{- $k := .Values.kafka -}}
{{- $kafka := dict "bootstrap_servers" (include "secureai.kafkaBootstrap" .) "group_id" (printf "%s-correlator" $k.groupId) "correlation_topic" $k.topics.correlation "campaigns_topic" $k.topics.campaigns "common" (include "secureai.pipelineConfig" . | fromYaml).kafka.common -}}
{{- $correlation := dict "enabled" true "window_s" .Values.correlator.windowS "min_sites" .Values.correlator.minSites -}}
{{- toYaml (dict "name" "correlator" "kafka" $kafka "correlation" $correlation) -}}
{{- end -}}

{{/* Where the API reads the model repository: the shared volume, else the image's copy */}}
{{- define "secureai.apiModels" -}}
{{- if .Values.modelRepository.persistence.enabled -}}/models{{- else -}}/opt/secureai/triton_model_repository{{- end -}}
{{- end -}}

{{/* The REST evaluator's config (pipelines/rest/config.py) */}}
{{- define "secureai.apiConfig" -}}
{{- $inference := dict -}}
{{- if eq .Values.api.engine "triton" -}}
{{- $inference = include "secureai.inference" (list . (dict "connect_timeout_s" 5 "request_timeout_s" 10 "max_outage_s" 10)) | fromYaml -}}
{{- else -}}
{{- $inference = dict "engine" "inprocess" "repository" (include "secureai.apiModels" .) "threads" 1 -}}
{{- end -}}
{{- $auth := dict "enabled" true "token_file" "/etc/secureai/api-token/token" -}}
{{- $limits := dict "max_events" .Values.api.maxEvents "max_body_bytes" .Values.api.maxBodyBytes -}}
{{- toYaml (dict "name" "secureai-api" "host" "0.0.0.0" "port" .Values.api.port "spec" .Values.spec "inference" $inference "models_repository" (include "secureai.apiModels" .) "auth" $auth "limits" $limits) -}}
{{- end -}}

{{/* The federated run's config (federated/config.py) */}}
{{- define "secureai.flConfig" -}}
{{- $fixed := dict "runs_dir" "/runs" "monitoring" (dict "metrics_port" .Values.fl.superlink.metricsPort "metrics_host" "0.0.0.0") -}}
{{- $cfg := mergeOverwrite (deepCopy .Values.fl.config) $fixed -}}
{{- if ne (int (index $cfg.sites "n_sites")) (int .Values.fl.sites) -}}
{{- fail (printf "fl.config.sites.n_sites (%v) must equal fl.sites (%v)" (index $cfg.sites "n_sites") .Values.fl.sites) -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/* An init container that copies the committed repository into an empty volume */}}
{{- define "secureai.seedModels" -}}
- name: seed-model-repository
  image: {{ include "secureai.image" (list (index . 0) (index . 1)) }}
  imagePullPolicy: {{ include "secureai.pullPolicy" (list (index . 0) (index . 1)) }}
  command: ["sh", "-c"]
  args:
    - >-
      if [ -z "$(ls -A /models)" ]; then cp -R {{ index . 2 }}/. /models/ && echo seeded;
      else echo "model repository already populated"; fi
  securityContext: {{- toYaml (index . 0).Values.containerSecurityContext | nindent 4 }}
  volumeMounts:
    - {name: model-repository, mountPath: /models}
{{- end -}}
