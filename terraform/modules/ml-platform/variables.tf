variable "cluster_name" {
  description = "EKS cluster name."
  type        = string
}

variable "kubernetes_version" {
  description = "EKS control-plane version."
  type        = string
  default     = "1.33"
}

variable "vpc_id" {
  description = "VPC the cluster runs in."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets for the control plane ENIs and the node groups."
  type        = list(string)
}

variable "node_groups" {
  description = "EKS managed node groups by name, one per platform.yaml pool (rendered by `mlplat cluster render`)."
  type = map(object({
    pool           = string
    instance_types = list(string)
    capacity_type  = string
    min_size       = number
    max_size       = number
    desired_size   = number
    gpu            = bool
    labels         = map(string)
    taints = list(object({
      key    = string
      value  = string
      effect = string
    }))
  }))

  validation {
    condition     = alltrue([for g in values(var.node_groups) : contains(["SPOT", "ON_DEMAND"], g.capacity_type)])
    error_message = "capacity_type must be SPOT or ON_DEMAND (platform.yaml pools.*.capacity: spot | on-demand)."
  }
}

variable "teams" {
  description = "Teams of platform.yaml: namespace, cost center and ResourceQuota hard limits (rendered)."
  type = map(object({
    namespace   = string
    cost_center = string
    quota       = map(string)
  }))
}

variable "platform_namespace" {
  description = "Namespace of the shared RayCluster, governance webhook and monitoring ConfigMaps."
  type        = string
}

variable "kuberay_version" {
  description = "KubeRay operator Helm chart version (the CRDs cluster/ is validated against)."
  type        = string
}

variable "ray_version" {
  description = "Ray version pinned in pyproject.toml; the image tags in cluster/ follow it."
  type        = string
}

variable "team_role_arns" {
  description = "Optional IAM role per team; its principals get the team's RBAC group mlplat:<team>."
  type        = map(string)
  default     = {}
}

variable "tags" {
  description = "Tags on every AWS resource."
  type        = map(string)
  default     = {}
}
