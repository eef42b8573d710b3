# The same namespaces and quotas as cluster/teams/*.yaml, from the same rendered team list:
# Terraform owns them in an EKS account; `kubectl apply -k cluster/` finds them identical.
resource "kubernetes_namespace_v1" "platform" {
  metadata {
    name   = var.platform_namespace
    labels = { "app.kubernetes.io/part-of" = "mlplat" }
  }
  depends_on = [aws_eks_node_group.pool]
}

resource "kubernetes_namespace_v1" "team" {
  for_each = var.teams

  metadata {
    name = each.value.namespace
    labels = {
      "app.kubernetes.io/part-of" = "mlplat"
      "mlplat.io/team"            = each.key
    }
    annotations = { "mlplat.io/cost-center" = each.value.cost_center }
  }
  depends_on = [aws_eks_node_group.pool]
}

resource "kubernetes_resource_quota_v1" "team" {
  for_each = var.teams

  metadata {
    name      = "team-quota"
    namespace = kubernetes_namespace_v1.team[each.key].metadata[0].name
    labels = {
      "app.kubernetes.io/part-of" = "mlplat"
      "mlplat.io/team"            = each.key
    }
  }
  spec {
    hard = each.value.quota
  }
}
