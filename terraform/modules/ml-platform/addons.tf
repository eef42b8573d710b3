locals {
  # Device-plugin pods must run on every GPU node, whatever the pool's taints.
  gpu_tolerations = distinct(flatten([
    for g in values(var.node_groups) : [
      for t in g.taints : { key = t.key, operator = "Exists", effect = "NoSchedule" }
    ] if g.gpu
  ]))
}

resource "helm_release" "kuberay_operator" {
  name             = "kuberay-operator"
  repository       = "https://ray-project.github.io/kuberay-helm/"
  chart            = "kuberay-operator"
  version          = var.kuberay_version
  namespace        = "kuberay-system"
  create_namespace = true
  depends_on       = [aws_eks_node_group.pool]
}

resource "helm_release" "nvidia_device_plugin" {
  name             = "nvidia-device-plugin"
  repository       = "https://nvidia.github.io/k8s-device-plugin"
  chart            = "nvidia-device-plugin"
  version          = "0.17.1"
  namespace        = "nvidia-device-plugin"
  create_namespace = true
  values           = [yamlencode({ tolerations = local.gpu_tolerations })]
  depends_on       = [aws_eks_node_group.pool]
}

# Issues the governance webhook's serving certificate and injects its CA (cluster/governance-webhook.yaml).
resource "helm_release" "cert_manager" {
  name             = "cert-manager"
  repository       = "https://charts.jetstack.io"
  chart            = "cert-manager"
  version          = "v1.16.2"
  namespace        = "cert-manager"
  create_namespace = true
  set {
    name  = "crds.enabled"
    value = "true"
  }
  depends_on = [aws_eks_node_group.pool]
}

# The ingress in front of every RayService (cluster/ingresses/<app>.yaml, class "nginx"): it
# replays a data-route request that a dying Serve replica dropped (the policy is rendered from
# mlplat.cluster.INGRESS_REPLAYED_ON, the same one the local ingress runs). GPU pools are tainted,
# so its pods land on the platform's CPU nodes. An NLB gives it one address per cluster.
resource "helm_release" "ingress_nginx" {
  name             = "ingress-nginx"
  repository       = "https://kubernetes.github.io/ingress-nginx"
  chart            = "ingress-nginx"
  version          = "4.12.1"
  namespace        = "ingress-nginx"
  create_namespace = true
  values = [yamlencode({
    controller = {
      replicaCount = 2
      # Per-Ingress retry annotations (proxy-next-upstream) are allowed by default.
      service = {
        annotations = {
          "service.beta.kubernetes.io/aws-load-balancer-type"   = "nlb"
          "service.beta.kubernetes.io/aws-load-balancer-scheme" = "internal"
        }
      }
    }
  })]
  depends_on = [aws_eks_node_group.pool]
}
