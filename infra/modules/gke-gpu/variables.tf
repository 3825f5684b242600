variable "project_id" {
  description = "Google Cloud project of the cluster."
  type        = string
}

variable "name" {
  description = "Cluster name (also the prefix of the node pools and the node service account)."
  type        = string
  default     = "secureai"
}

variable "region" {
  description = "Region of the (regional) cluster."
  type        = string
  default     = "europe-west4"
}

variable "node_locations" {
  description = "Zones of the CPU node pool (null: every zone of the region)."
  type        = list(string)
  default     = null
}

variable "gpu_node_locations" {
  description = "Zones of the GPU node pool: zones of the region that offer gpu_accelerator_type."
  type        = list(string)
  default     = ["europe-west4-a", "europe-west4-b"]
  validation {
    condition     = length(var.gpu_node_locations) >= 1
    error_message = "The GPU node pool needs at least one zone."
  }
}

variable "kubernetes_version" {
  description = "Minimum control plane version (the Helm chart needs >= 1.27); the release channel upgrades it."
  type        = string
  default     = "1.31"
}

variable "release_channel" {
  description = "GKE release channel: RAPID, REGULAR, STABLE or EXTENDED."
  type        = string
  default     = "REGULAR"
  validation {
    condition     = contains(["RAPID", "REGULAR", "STABLE", "EXTENDED"], var.release_channel)
    error_message = "release_channel must be RAPID, REGULAR, STABLE or EXTENDED."
  }
}

variable "network" {
  description = "VPC network (name or self link)."
  type        = string
}

variable "subnetwork" {
  description = "Subnetwork of the nodes, with secondary ranges for pods and services."
  type        = string
}

variable "pods_range_name" {
  description = "Secondary range of the subnetwork for pod IPs."
  type        = string
  default     = "pods"
}

variable "services_range_name" {
  description = "Secondary range of the subnetwork for service IPs."
  type        = string
  default     = "services"
}

variable "master_ipv4_cidr_block" {
  description = "/28 range for the control plane's private endpoint."
  type        = string
  default     = "172.16.0.0/28"
}

variable "endpoint_public_access" {
  description = "Expose the Kubernetes API publicly (restricted to master_authorized_networks)."
  type        = bool
  default     = false
}

variable "dns_endpoint_external" {
  description = "Allow IAM-authorized access to the control plane's DNS endpoint from outside the VPC (CI deploys)."
  type        = bool
  default     = true
}

variable "master_authorized_networks" {
  description = "CIDRs allowed to reach the Kubernetes API."
  type        = list(object({ cidr_block = string, display_name = string }))
  default     = []
}

variable "secrets_kms_key" {
  description = "Cloud KMS key (projects/.../cryptoKeys/...) encrypting Kubernetes secrets; null: Google-managed."
  type        = string
  default     = null
}

variable "deletion_protection" {
  description = "Refuse to destroy the cluster (set false to tear a test cluster down)."
  type        = bool
  default     = true
}

variable "system_machine_type" {
  description = "CPU node pool: Kafka clients, the scoring pipeline, the API, Flower."
  type        = string
  default     = "n2-standard-4"
}

variable "system_scaling" {
  description = "CPU node pool size, per zone."
  type        = object({ min = number, max = number })
  default     = { min = 1, max = 3 }
}

variable "gpu_machine_type" {
  description = "GPU node pool machine type (g2-standard-8: one NVIDIA L4)."
  type        = string
  default     = "g2-standard-8"
}

variable "gpu_accelerator_type" {
  description = "Accelerator of the GPU node pool (nvidia-l4, nvidia-tesla-t4, ...)."
  type        = string
  default     = "nvidia-l4"
}

variable "gpu_count" {
  description = "GPUs per GPU node (Triton requests one)."
  type        = number
  default     = 1
}

variable "gpu_driver_version" {
  description = "NVIDIA driver GKE installs: DEFAULT or LATEST for the node version (INSTALLATION_DISABLED: bring your own)."
  type        = string
  default     = "DEFAULT"
  validation {
    condition     = contains(["DEFAULT", "LATEST", "INSTALLATION_DISABLED"], var.gpu_driver_version)
    error_message = "gpu_driver_version must be DEFAULT, LATEST or INSTALLATION_DISABLED."
  }
}

variable "gpu_scaling" {
  description = "GPU node pool size, per zone (min 0 lets it scale to zero)."
  type        = object({ min = number, max = number })
  default     = { min = 0, max = 2 }
}

variable "gpu_disk_size_gb" {
  description = "Boot disk of GPU nodes (the Triton NGC image is ~15 GB)."
  type        = number
  default     = 100
}

variable "gpu_spot" {
  description = "Run the GPU node pool on Spot VMs (cheaper, can be preempted)."
  type        = bool
  default     = false
}

variable "labels" {
  description = "Labels on the cluster and its nodes' VMs."
  type        = map(string)
  default     = {}
}
