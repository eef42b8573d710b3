# The ml-platform module: EKS with the node pools of platform.yaml, the KubeRay operator and
# the team namespaces/quotas. Every size, label, taint and quota arrives through variables
# rendered from platform.yaml (environments/*/platform.auto.tfvars.json) — none is typed here.
terraform {
  required_version = ">= 1.6"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.60"
    }
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = "~> 2.31"
    }
    helm = {
      source  = "hashicorp/helm"
      version = "~> 2.15"
    }
  }
}
