"""One source of truth: platform.yaml's teams, pools and taints, and pyproject's Ray pin, agree
across cluster/ and terraform/ (and the checks below do notice when they do not)."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

from mlplat.cluster import parse_taint, ray_pin, team_namespace
from tests.unit.infra.conftest import CLUSTER, REPO, TFVARS, load_docs, pod_templates


def _tfvars() -> dict[str, Any]:
    return json.loads(TFVARS.read_text())


def placement_problems(resources: list[dict[str, Any]], tfvars: dict[str, Any]) -> list[str]:
    """Every Ray pod selects exactly one Terraform node group and tolerates all its taints."""
    groups = tfvars["node_groups"]
    problems = []
    for where, pod in pod_templates(resources):
        selector = pod["spec"].get("nodeSelector", {})
        matches = [n for n, g in groups.items() if selector.items() <= g["labels"].items()]
        if len(matches) != 1:
            problems.append(f"{where}: nodeSelector {selector} matches node groups {matches}")
            continue
        tolerated = {(t["key"], t["value"], parse_taint("-", f"{t['key']}={t['value']}:{t['effect']}")
                      .terraform()["effect"]) for t in pod["spec"].get("tolerations", [])}
        taints = {(t["key"], t["value"], t["effect"]) for t in groups[matches[0]]["taints"]}
        if taints - tolerated:
            problems.append(f"{where}: does not tolerate {sorted(taints - tolerated)} of {matches[0]}")
        if tolerated - taints:
            problems.append(f"{where}: tolerates {sorted(tolerated - taints)}, no such taint on {matches[0]}")
    return problems


def quota_problems(cfg, resources: list[dict[str, Any]], tfvars: dict[str, Any]) -> list[str]:
    """Each team: a Namespace and a ResourceQuota in cluster/ and the same in the tfvars."""
    problems = []
    namespaces = {d["metadata"]["name"] for d in resources if d["kind"] == "Namespace"}
    quotas = {d["metadata"]["namespace"]: d["spec"]["hard"] for d in resources
              if d["kind"] == "ResourceQuota"}
    for team in cfg.teams:
        ns = team_namespace(team)
        tf = tfvars["teams"].get(team)
        if ns not in namespaces:
            problems.append(f"{team}: no Namespace {ns} in cluster/")
        if ns not in quotas:
            problems.append(f"{team}: no ResourceQuota in {ns} in cluster/")
        if tf is None:
            problems.append(f"{team}: not in terraform tfvars")
            continue
        if tf["namespace"] != ns:
            problems.append(f"{team}: terraform namespace {tf['namespace']} != {ns}")
        if quotas.get(ns) != tf["quota"]:
            problems.append(f"{team}: quota differs: cluster {quotas.get(ns)} terraform {tf['quota']}")
        expected_gpu = sum(q.gpu for q in cfg.teams[team].quotas.values())
        if quotas.get(ns, {}).get("requests.nvidia.com/gpu") != str(expected_gpu):
            problems.append(f"{team}: GPU quota is not platform.yaml's {expected_gpu}")
    extra = set(tfvars["teams"]) - set(cfg.teams)
    problems += [f"{team}: in terraform but not in platform.yaml" for team in sorted(extra)]
    return problems


def test_every_team_has_namespace_and_quota_in_cluster_and_terraform(cfg, resources) -> None:
    assert quota_problems(cfg, resources, _tfvars()) == []


def test_quota_check_notices_drift(cfg, resources) -> None:
    tfvars = _tfvars()
    tfvars["teams"]["risk"]["quota"]["requests.nvidia.com/gpu"] = "999"
    assert any("risk: quota differs" in p for p in quota_problems(cfg, resources, tfvars))
    without = [d for d in resources if not (d["kind"] == "ResourceQuota"
                                            and d["metadata"]["namespace"] == "team-search")]
    assert "search: no ResourceQuota in team-search in cluster/" in quota_problems(cfg, without, _tfvars())


def test_node_labels_and_taints_in_terraform_match_the_pods(resources) -> None:
    assert pod_templates(resources)
    assert placement_problems(resources, _tfvars()) == []


def test_placement_check_notices_a_missing_toleration_or_label(resources) -> None:
    broken = copy.deepcopy(resources)
    rc = next(d for d in broken if d["kind"] == "RayCluster")
    training = next(g for g in rc["spec"]["workerGroupSpecs"] if g["groupName"] == "training-spot")
    training["template"]["spec"]["tolerations"].pop()
    serving = next(g for g in rc["spec"]["workerGroupSpecs"] if g["groupName"] == "serving-ondemand")
    serving["template"]["spec"]["nodeSelector"]["role"] = "servng"
    problems = placement_problems(broken, _tfvars())
    assert any("RayCluster/mlplat/training-spot: does not tolerate" in p for p in problems)
    assert any("RayCluster/mlplat/serving-ondemand: nodeSelector" in p for p in problems)


def test_terraform_node_groups_follow_platform_yaml_pools(cfg) -> None:
    # The issue sketched training 0..20 and serving 2..40; platform.yaml (8 and 20) wins.
    groups = {g["pool"]: g for g in _tfvars()["node_groups"].values()}
    assert set(groups) == set(cfg.pools)
    for name, pool in cfg.pools.items():
        group = groups[name]
        assert group["instance_types"] == [pool.instance_type]
        assert group["capacity_type"] == {"spot": "SPOT", "on-demand": "ON_DEMAND"}[pool.capacity]
        assert (group["min_size"], group["max_size"]) == (pool.min_nodes, pool.max_nodes)
        assert group["gpu"] == (pool.gpus_per_node > 0)
        assert group["labels"]["pool"] == name
        assert len(group["taints"]) == len(pool.taints)
    assert groups["training-spot"]["labels"]["role"] == "training"


def _images(resources) -> list[str]:
    pods = [pod for _, pod in pod_templates(resources)]
    pods += [d["spec"]["template"] for d in resources if d["kind"] == "Deployment"]
    return [c["image"] for pod in pods for c in pod["spec"]["containers"]]


def test_image_tags_and_ray_versions_match_pyproject(resources) -> None:
    version, py = ray_pin(REPO)
    images = _images(resources)
    assert images and all(i.split(":")[-1].startswith(f"{version}-{py}") for i in images), images
    clusters = [d["spec"] for d in resources if d["kind"] == "RayCluster"]
    clusters += [d["spec"]["rayClusterConfig"] for d in resources if d["kind"] == "RayService"]
    clusters += [d["spec"]["rayClusterSpec"] for d in resources
                 if d["kind"] == "RayJob" and "rayClusterSpec" in d["spec"]]
    assert {c["rayVersion"] for c in clusters} == {version}
    tfvars = _tfvars()
    assert tfvars["ray_version"] == version
    dockerfile = (CLUSTER / "image" / "Dockerfile").read_text()
    assert f"FROM rayproject/ray:{version}-{py}" in dockerfile
    crd_dir = os.environ.get("KUBERAY_CRD_DIR")
    if crd_dir:  # the operator Terraform installs is the one whose CRDs validate cluster/
        assert f"v{tfvars['kuberay_version']}" in (Path(crd_dir) / "SOURCE.txt").read_text()


def test_image_check_notices_a_wrong_tag(tmp_path: Path) -> None:
    text = (CLUSTER / "raycluster.yaml").read_text()
    version, py = ray_pin(REPO)
    broken = load_docs(text.replace(f":{version}-{py}", ":2.9.0-py311", 1))
    assert not all(i.split(":")[-1].startswith(f"{version}-{py}") for i in _images(broken))
