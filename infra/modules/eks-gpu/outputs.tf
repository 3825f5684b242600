output "cluster_name" {
  description = "EKS cluster name."
  value       = aws_eks_cluster.this.name
}

output "cluster_endpoint" {
  description = "Kubernetes API endpoint."
  value       = aws_eks_cluster.this.endpoint
}

output "cluster_ca_certificate" {
  description = "Base64 CA certificate of the Kubernetes API."
  value       = aws_eks_cluster.this.certificate_authority[0].data
}

output "gpu_node_selector" {
  description = "Node labels of the GPU node group (helm values triton.nodeSelector)."
  value       = local.gpu_label
}

output "gpu_toleration" {
  description = "Toleration for the GPU taint (helm values triton.tolerations)."
  value       = { key = "nvidia.com/gpu", operator = "Exists", effect = "NoSchedule" }
}
