output "cluster_name" {
  value = aws_eks_cluster.this.name
}

output "cluster_endpoint" {
  value = aws_eks_cluster.this.endpoint
}

output "cluster_certificate_authority" {
  value = aws_eks_cluster.this.certificate_authority[0].data
}

output "node_groups" {
  description = "Node group name → pool."
  value       = { for name, g in var.node_groups : name => g.pool }
}

output "team_namespaces" {
  value = { for team, t in var.teams : team => kubernetes_namespace_v1.team[team].metadata[0].name }
}
