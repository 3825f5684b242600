variable "name" {
  description = "Cluster name (also the prefix of the IAM roles and node groups)."
  type        = string
  default     = "secureai"
}

variable "kubernetes_version" {
  description = "EKS Kubernetes version (the Helm chart needs >= 1.27)."
  type        = string
  default     = "1.31"
}

variable "subnet_ids" {
  description = "Private subnets (at least two AZs) for the control plane ENIs and the nodes."
  type        = list(string)
  validation {
    condition     = length(var.subnet_ids) >= 2
    error_message = "EKS needs subnets in at least two availability zones."
  }
}

variable "endpoint_public_access" {
  description = "Expose the Kubernetes API publicly (restricted to public_access_cidrs)."
  type        = bool
  default     = false
}

variable "public_access_cidrs" {
  description = "CIDRs allowed to reach a public API endpoint."
  type        = list(string)
  default     = []
}

variable "system_instance_types" {
  description = "CPU node group: Kafka clients, the scoring pipeline, the API, Flower."
  type        = list(string)
  default     = ["m6i.xlarge"]
}

variable "system_scaling" {
  description = "CPU node group size."
  type        = object({ min = number, desired = number, max = number })
  default     = { min = 2, desired = 2, max = 4 }
}

variable "gpu_instance_types" {
  description = "GPU node group for Triton (one NVIDIA GPU per node)."
  type        = list(string)
  default     = ["g5.xlarge"]
}

variable "gpu_scaling" {
  description = "GPU node group size (min 0 lets it scale to zero)."
  type        = object({ min = number, desired = number, max = number })
  default     = { min = 1, desired = 1, max = 2 }
}

variable "gpu_ami_type" {
  description = "EKS-optimized AMI with the NVIDIA driver and container toolkit."
  type        = string
  default     = "AL2023_x86_64_NVIDIA"
}

variable "gpu_disk_size_gb" {
  description = "Root volume of GPU nodes (the Triton NGC image is ~15 GB)."
  type        = number
  default     = 100
}

variable "tags" {
  description = "Tags on every resource."
  type        = map(string)
  default     = {}
}
