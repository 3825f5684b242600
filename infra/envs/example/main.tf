# Example root: an EKS cluster with a GPU node group, then the SecureAI release on it.
#   terraform init && terraform apply -var 'subnet_ids=["subnet-a","subnet-b"]'
terraform {
  required_version = ">= 1.5.0"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.100"
    }
    helm = {
      source  = "hashicorp/helm"
      version = "~> 2.17"
    }
  }
}

variable "region" {
  description = "AWS region."
  type        = string
  default     = "eu-west-1"
}

variable "subnet_ids" {
  description = "Private subnets in two or more AZs."
  type        = list(string)
}

provider "aws" {
  region = var.region
}

module "eks" {
  source     = "../../modules/eks-gpu"
  name       = "secureai"
  subnet_ids = var.subnet_ids
  tags       = { project = "secureai" }
}

data "aws_eks_cluster_auth" "this" {
  name = module.eks.cluster_name
}

provider "helm" {
  kubernetes {
    host                   = module.eks.cluster_endpoint
    cluster_ca_certificate = base64decode(module.eks.cluster_ca_certificate)
    token                  = data.aws_eks_cluster_auth.this.token
  }
}

module "secureai" {
  source            = "../../modules/secureai-release"
  chart_path        = "${path.root}/../../../helm/secureai"
  profile           = "gpu"
  gpu_node_selector = module.eks.gpu_node_selector
}

output "cluster_name" {
  value = module.eks.cluster_name
}

output "release" {
  value = module.secureai.release
}
