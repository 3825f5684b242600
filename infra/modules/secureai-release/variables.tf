variable "release_name" {
  description = "Helm release name."
  type        = string
  default     = "secureai"
}

variable "namespace" {
  description = "Namespace of the release (created when missing)."
  type        = string
  default     = "secureai"
}

variable "chart_path" {
  description = "Path of the SecureAI chart (helm/secureai in this repository)."
  type        = string
}

variable "profile" {
  description = "Values profile of the chart: small or gpu (values-<profile>.yaml)."
  type        = string
  default     = "gpu"
  validation {
    condition     = contains(["small", "gpu"], var.profile)
    error_message = "profile must be small or gpu."
  }
}

variable "extra_values" {
  description = "More values (YAML documents), applied after the profile."
  type        = list(string)
  default     = []
}

variable "gpu_node_selector" {
  description = "Node labels of the GPU node group (the eks-gpu module's output)."
  type        = map(string)
  default     = { "secureai.io/node-pool" = "gpu" }
}
