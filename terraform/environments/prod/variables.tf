variable "region" {
  description = "AWS region (p4d.24xlarge spot capacity differs by region)."
  type        = string
  default     = "us-east-1"
}

variable "cluster_name" {
  type    = string
  default = "mlplat-prod"
}

variable "vpc_cidr" {
  type    = string
  default = "10.40.0.0/16"
}

variable "team_role_arns" {
  description = "Optional IAM role per team (team name → role ARN) for `kubectl` access to its namespace."
  type        = map(string)
  default     = {}
}

# Set by platform.auto.tfvars.json (rendered by `mlplat cluster render`; do not set by hand).
variable "node_groups" {
  type = map(object({
    pool           = string
    instance_types = list(string)
    capacity_type  = string
    min_size       = number
    max_size       = number
    desired_size   = number
    gpu            = bool
    labels         = map(string)
    taints         = list(object({ key = string, value = string, effect = string }))
  }))
}

variable "teams" {
  type = map(object({
    namespace   = string
    cost_center = string
    quota       = map(string)
  }))
}

variable "platform_namespace" {
  type = string
}

variable "kuberay_version" {
  type = string
}

variable "ray_version" {
  type = string
}
