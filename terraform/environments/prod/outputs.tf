output "kubeconfig_command" {
  description = "Point kubectl at the new cluster."
  value       = "aws eks update-kubeconfig --region ${var.region} --name ${module.ml_platform.cluster_name}"
}

output "node_groups" {
  value = module.ml_platform.node_groups
}

output "team_namespaces" {
  value = module.ml_platform.team_namespaces
}
