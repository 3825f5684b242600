# The SecureAI Helm release on a cluster the helm provider is configured for (see envs/example).
resource "helm_release" "secureai" {
  name             = var.release_name
  namespace        = var.namespace
  create_namespace = true
  chart            = var.chart_path
  atomic           = true
  wait             = true
  timeout          = 900

  values = concat(
    [file("${var.chart_path}/values-${var.profile}.yaml")],
    var.profile == "gpu" ? [yamlencode({ triton = { nodeSelector = var.gpu_node_selector } })] : [],
    var.extra_values,
  )
}
