# Production: a VPC and the ml-platform module. Sizes, labels, taints, teams and quotas come
# from platform.auto.tfvars.json, which `mlplat cluster render` writes from platform.yaml.
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

provider "aws" {
  region = var.region
  default_tags {
    tags = { "app.kubernetes.io/part-of" = "mlplat", environment = "prod" }
  }
}

data "aws_availability_zones" "available" {
  state = "available"
}

module "vpc" {
  source  = "terraform-aws-modules/vpc/aws"
  version = "~> 5.13"

  name               = var.cluster_name
  cidr               = var.vpc_cidr
  azs                = slice(data.aws_availability_zones.available.names, 0, 3)
  private_subnets    = [for i in range(3) : cidrsubnet(var.vpc_cidr, 4, i)]
  public_subnets     = [for i in range(3) : cidrsubnet(var.vpc_cidr, 8, 48 + i)]
  enable_nat_gateway = true
  single_nat_gateway = true

  public_subnet_tags  = { "kubernetes.io/role/elb" = "1" }
  private_subnet_tags = { "kubernetes.io/role/internal-elb" = "1" }
}

module "ml_platform" {
  source = "../../modules/ml-platform"

  cluster_name       = var.cluster_name
  vpc_id             = module.vpc.vpc_id
  subnet_ids         = module.vpc.private_subnets
  node_groups        = var.node_groups
  teams              = var.teams
  platform_namespace = var.platform_namespace
  kuberay_version    = var.kuberay_version
  ray_version        = var.ray_version
  team_role_arns     = var.team_role_arns
}

provider "kubernetes" {
  host                   = module.ml_platform.cluster_endpoint
  cluster_ca_certificate = base64decode(module.ml_platform.cluster_certificate_authority)
  exec {
    api_version = "client.authentication.k8s.io/v1beta1"
    command     = "aws"
    args        = ["eks", "get-token", "--cluster-name", module.ml_platform.cluster_name, "--region", var.region]
  }
}

provider "helm" {
  kubernetes {
    host                   = module.ml_platform.cluster_endpoint
    cluster_ca_certificate = base64decode(module.ml_platform.cluster_certificate_authority)
    exec {
      api_version = "client.authentication.k8s.io/v1beta1"
      command     = "aws"
      args        = ["eks", "get-token", "--cluster-name", module.ml_platform.cluster_name, "--region", var.region]
    }
  }
}
