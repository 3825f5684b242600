output "cluster_name" {
  description = "GKE cluster name."
  value       = google_container_cluster.this.name
}

output "location" {
  description = "Region of the cluster (its control plane and node pools)."
  value       = google_container_cluster.this.location
}

output "cluster_endpoint" {
  description = "Kubernetes API endpoint (private unless endpoint_public_access)."
  value       = "https://${google_container_cluster.this.endpoint}"
}

output "cluster_ca_certificate" {
  description = "Base64 CA certificate of the Kubernetes API."
  value       = google_container_cluster.this.master_auth[0].cluster_ca_certificate
}

output "dns_endpoint" {
  description = "DNS-based control plane endpoint (get-gke-credentials use_dns_based_endpoint)."
  value       = google_container_cluster.this.control_plane_endpoints_config[0].dns_endpoint_config[0].endpoint
}

output "workload_pool" {
  description = "Workload Identity pool: bind Kubernetes service accounts to Google ones."
  value       = "${var.project_id}.svc.id.goog"
}

output "gpu_node_selector" {
  description = "Node labels of the GPU node pool (helm values triton.nodeSelector)."
  value       = local.gpu_label
}

output "gpu_toleration" {
  description = "Toleration for the GPU taint (helm values triton.tolerations)."
  value       = { key = "nvidia.com/gpu", operator = "Exists", effect = "NoSchedule" }
}

output "rwx_storage_class" {
  description = "Storage class of the Filestore CSI driver for the GPU profile's ReadWriteMany volumes."
  value       = "standard-rwx"
}
