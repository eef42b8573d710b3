"""cluster/ validates against the real schemas: KubeRay v1.7.0 CRDs and Kubernetes' own."""

from __future__ import annotations

import copy
from typing import Any

import kubernetes_validate
import pytest

from mlplat._pyast import parse_source
from tests.unit.infra.conftest import KUBERAY_KINDS

K8S_VERSION = "1.33"  # a version kubernetes-validate ships schemas for (offline)


def _core_errors(doc: dict[str, Any]) -> str | None:
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return str(exc.caught.message if hasattr(exc, "caught") else exc)
    return None


def test_every_kuberay_resource_matches_its_crd(resources, crd_validators) -> None:
    kuberay = [d for d in resources if d["kind"] in KUBERAY_KINDS]
    assert {d["kind"] for d in kuberay} == set(KUBERAY_KINDS)
    problems = {f"{d['kind']}/{d['metadata']['name']}": crd_validators[d["kind"]](d)
                for d in kuberay}
    assert {k: v for k, v in problems.items() if v} == {}


CERT_MANAGER = "cert-manager.io/v1"  # CRDs of cert-manager: no schema ships offline


def test_every_core_resource_validates_with_kubernetes_validate(resources) -> None:
    core = [d for d in resources if d["kind"] not in KUBERAY_KINDS
            and d["apiVersion"] != CERT_MANAGER]
    kinds = {d["kind"] for d in core}
    assert {"Namespace", "ResourceQuota", "Role", "RoleBinding", "PriorityClass", "Service",
            "Deployment", "CustomResourceDefinition", "ValidatingWebhookConfiguration"} <= kinds
    problems = {f"{d['kind']}/{d['metadata']['name']}": _core_errors(d) for d in core}
    assert {k: v for k, v in problems.items() if v} == {}


def _raycluster(resources) -> dict[str, Any]:
    return copy.deepcopy(next(d for d in resources if d["kind"] == "RayCluster"))


@pytest.mark.parametrize("mutate, expected", [
    (lambda rc: rc["spec"]["workerGroupSpecs"][0].update(minReplica=1), "minReplica"),
    (lambda rc: rc["spec"]["workerGroupSpecs"][0].update(maxReplicas="ten"), "ten"),
    (lambda rc: rc["spec"]["workerGroupSpecs"][0].pop("groupName"), "groupName"),
    (lambda rc: rc["spec"]["autoscalerOptions"].update(version="v3"), "v3"),
    (lambda rc: rc["spec"]["headGroupSpec"]["template"]["spec"].update(nodeSelecter={}),
     "nodeSelecter"),
])
def test_crd_validation_catches_a_broken_raycluster(resources, crd_validators, mutate,
                                                    expected) -> None:
    rc = _raycluster(resources)
    assert crd_validators["RayCluster"](rc) == []
    mutate(rc)
    errors = crd_validators["RayCluster"](rc)
    assert errors and expected in " ".join(errors)


def test_crd_validation_catches_a_broken_rayjob_and_rayservice(resources, crd_validators) -> None:
    job = copy.deepcopy(next(d for d in resources if d["kind"] == "RayJob"))
    job["spec"]["shutdownAfterJobFinishes"] = "yes"
    assert any("yes" in e for e in crd_validators["RayJob"](job))
    svc = copy.deepcopy(next(d for d in resources if d["kind"] == "RayService"))
    svc["spec"]["serveConfigV2"] = {"applications": []}  # must be a YAML string
    assert crd_validators["RayService"](svc)


def test_kubernetes_validate_catches_broken_core_resources(resources) -> None:
    quota = copy.deepcopy(next(d for d in resources if d["kind"] == "ResourceQuota"))
    quota["spec"]["hardd"] = quota["spec"].pop("hard")
    assert _core_errors(quota)
    prio = copy.deepcopy(next(d for d in resources if d["kind"] == "PriorityClass"))
    prio["value"] = "high"
    assert _core_errors(prio)
    hook = copy.deepcopy(next(d for d in resources if d["kind"] == "ValidatingWebhookConfiguration"))
    del hook["webhooks"][0]["sideEffects"]
    assert _core_errors(hook)


def test_serve_configs_are_valid_serve_deploy_configs(resources) -> None:
    import yaml
    from ray.serve.schema import ServeDeploySchema

    services = [d for d in resources if d["kind"] == "RayService"]
    assert services
    for svc in services:
        config = ServeDeploySchema.model_validate(yaml.safe_load(svc["spec"]["serveConfigV2"]))
        assert [a.name for a in config.applications] == [svc["metadata"]["name"]]


def test_webhook_service_certificate_and_configuration_agree(resources) -> None:
    by_kind = {(d["kind"], d["metadata"]["name"]): d for d in resources}
    hook = by_kind[("ValidatingWebhookConfiguration", "mlplat-governance")]["webhooks"][0]
    svc_ref = hook["clientConfig"]["service"]
    assert (svc_ref["namespace"], svc_ref["name"], svc_ref["port"], svc_ref["path"]) == (
        "mlplat", "mlplat-governance", 8443, "/v1/admission/model-versions")
    assert hook["rules"][0]["operations"] == ["DELETE"]
    crd = by_kind[("CustomResourceDefinition", "modelversions.mlplat.io")]
    assert hook["rules"][0]["resources"] == [crd["spec"]["names"]["plural"]]
    service = by_kind[("Service", "mlplat-governance")]
    deployment = by_kind[("Deployment", "mlplat-governance")]
    assert service["spec"]["selector"] == deployment["spec"]["template"]["metadata"]["labels"]
    cert = by_kind[("Certificate", "mlplat-governance")]
    assert cert["apiVersion"] == CERT_MANAGER
    assert "mlplat-governance.mlplat.svc" in cert["spec"]["dnsNames"]
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    assert volumes[0]["secret"]["secretName"] == cert["spec"]["secretName"]
    annotations = by_kind[("ValidatingWebhookConfiguration", "mlplat-governance")]["metadata"]["annotations"]
    assert annotations["cert-manager.io/inject-ca-from"] == "mlplat/mlplat-governance"


def _defines(module: str, name: str) -> bool:
    """Does ``module`` (a file under platform/) bind ``name`` at top level? Read, not imported."""
    import ast

    from tests.unit.infra.conftest import REPO

    base = REPO / "platform" / module.replace(".", "/")
    path = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
    if not path.is_file():
        return False
    for node in parse_source(path.read_text(), str(path)).body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef) and node.name == name:
            return True
        if isinstance(node, ast.ImportFrom | ast.Import) and any(
                (a.asname or a.name) == name for a in node.names):
            return True
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return True
    return False


def test_every_serve_import_path_exists_in_the_package(resources) -> None:
    import yaml

    paths = [app["import_path"] for d in resources if d["kind"] == "RayService"
             for app in yaml.safe_load(d["spec"]["serveConfigV2"])["applications"]]
    assert paths
    missing = [p for p in paths if not _defines(*p.split(":"))]
    assert missing == []
    assert not _defines("mlplat.deployment.serve_app", "no_such_builder")
