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
