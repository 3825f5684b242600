# Example root: a GKE cluster with an NVIDIA L4 node pool, then the SecureAI release on it (the
# GKE counterpart of ../example).
#   terraform init && terraform apply -var project_id=my-project \
#     -var network=my-vpc -var subnetwork=my-subnet
terraform {
  required_version = ">= 1.5.0"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 7.0"
    }
    helm = {
      source  = "hashicorp/helm"
      version = "~> 2.17"
    }
  }
}

variable "project_id" {
  description = "Google Cloud project."
  type        = string
}

variable "region" {
  description = "Region of the cluster."
  type        = string
  default     = "europe-west4"
}

variable "network" {
  description = "VPC network."
  type        = string
}

variable "subnetwork" {
  description = "Subnetwork with the secondary ranges pods and services."
  type        = string
}

provider "google" {
  project = var.project_id
  region  = var.region
}

module "gke" {
  source     = "../../modules/gke-gpu"
  project_id = var.project_id
  name       = "secureai"
  region     = var.region
  network    = var.network
  subnetwork = var.subnetwork
  labels     = { project = "secureai" }
}

data "google_client_config" "this" {}

provider "helm" {
  kubernetes {
    host                   = module.gke.cluster_endpoint
    cluster_ca_certificate = base64decode(module.gke.cluster_ca_certificate)
    token                  = data.google_client_config.this.access_token
  }
}

module "secureai" {
  source            = "../../modules/secureai-release"
  chart_path        = "${path.root}/../../../helm/secureai"
  profile           = "gpu"
  gpu_node_selector = module.gke.gpu_node_selector
  # The GPU profile's ReadWriteMany volumes on Filestore instead of EFS.
  extra_values = [yamlencode({
    modelRepository = { persistence = { storageClassName = module.gke.rwx_storage_class } }
    fl              = { runs = { persistence = { storageClassName = module.gke.rwx_storage_class } } }
  })]
}

output "cluster_name" {
  value = module.gke.cluster_name
}

output "release" {
  value = module.secureai.release
}
