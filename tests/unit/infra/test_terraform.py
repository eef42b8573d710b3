"""terraform/: every .tf parses (python-hcl2; no terraform binary here) and is wired together."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import hcl2
import pytest

from tests.unit.infra.conftest import REPO, TFVARS

TF = REPO / "terraform"
MODULE = TF / "modules" / "ml-platform"
PROD = TF / "environments" / "prod"


def _clean(value: Any) -> Any:
    """hcl2's output without its quoting of block labels and its bookkeeping keys."""
    if isinstance(value, dict):
        return {k.strip('"'): _clean(v) for k, v in value.items()
                if k not in {"__is_block__", "__comments__", "__inline_comments__"}}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]  # hcl2 8.x keeps string literals quoted
    return value


def parse_dir(folder: Path) -> dict[str, list[Any]]:
    merged: dict[str, list[Any]] = {}
    for path in sorted(folder.glob("*.tf")):
        with path.open() as fh:
            for key, blocks in _clean(hcl2.load(fh)).items():
                merged.setdefault(key, []).extend(blocks)
    return merged


def blocks(parsed: dict[str, list[Any]], kind: str) -> dict[str, Any]:
    """``resource``/``data`` → {"type.name": body}; ``variable``/``module``/``output`` → {name: body}."""
    out = {}
    for block in parsed.get(kind, []):
        for first, rest in block.items():
            if kind in {"resource", "data"}:
                for name, body in rest.items():
                    out[f"{first}.{name}"] = body
            else:
                out[first] = rest
    return out


@pytest.fixture(scope="module")
def module() -> dict[str, list[Any]]:
    return parse_dir(MODULE)


@pytest.fixture(scope="module")
def prod() -> dict[str, list[Any]]:
    return parse_dir(PROD)


def test_every_tf_file_parses() -> None:
    files = sorted(TF.rglob("*.tf"))
    assert len(files) >= 8
    for path in files:
        with path.open() as fh:
            assert hcl2.load(fh), path


def test_module_builds_eks_node_groups_from_variables(module) -> None:
    res = blocks(module, "resource")
    assert "aws_eks_cluster.this" in res
    group = res["aws_eks_node_group.pool"]
    assert group["for_each"] == "${var.node_groups}"
    assert group["capacity_type"] == "${each.value.capacity_type}"
    assert group["instance_types"] == "${each.value.instance_types}"
    assert group["labels"] == "${each.value.labels}"
    assert group["scaling_config"][0] == {"min_size": "${each.value.min_size}",
                                          "max_size": "${each.value.max_size}",
                                          "desired_size": "${each.value.desired_size}"}
    (taint,) = group["dynamic"]
    assert taint["taint"]["for_each"] == "${each.value.taints}"


def test_module_installs_kuberay_and_team_namespaces_with_quotas(module) -> None:
    res = blocks(module, "resource")
    kuberay = res["helm_release.kuberay_operator"]
    assert kuberay["chart"] == "kuberay-operator" and kuberay["version"] == "${var.kuberay_version}"
    # The class cluster/ingresses/*.yaml name (their retry annotations need this controller).
    assert res["helm_release.ingress_nginx"]["chart"] == "ingress-nginx"
    assert res["kubernetes_namespace_v1.team"]["for_each"] == "${var.teams}"
    quota = res["kubernetes_resource_quota_v1.team"]
    assert quota["for_each"] == "${var.teams}"
    assert quota["spec"][0]["hard"] == "${each.value.quota}"


def _used_vars(folder: Path) -> set[str]:
    return set(re.findall(r"\bvar\.([A-Za-z_][\w-]*)", "".join(
        p.read_text() for p in folder.glob("*.tf"))))


@pytest.mark.parametrize("folder", [MODULE, PROD], ids=["module", "prod"])
def test_every_referenced_variable_is_declared(folder: Path) -> None:
    declared = set(blocks(parse_dir(folder), "variable"))
    assert _used_vars(folder) - declared == set()


def test_prod_passes_every_required_module_input(module, prod) -> None:
    variables = blocks(module, "variable")
    call = blocks(prod, "module")["ml_platform"]
    assert call["source"] == "../../modules/ml-platform"
    passed = set(call) - {"source", "version", "providers", "depends_on"}
    required = {name for name, body in variables.items() if "default" not in body}
    assert required - passed == set()
    assert passed - set(variables) == set()


def _object_fields(type_expr: str) -> set[str]:
    inner = type_expr[type_expr.index("object({") + len("object({"):]
    depth, fields, token = 0, set(), ""
    for ch in inner:
        if ch in "({":
            depth += 1
        elif ch in ")}":
            if depth == 0:
                break
            depth -= 1
        elif ch == "=" and depth == 0:
            fields.add(token.split(",")[-1].strip())
            token = ""
            continue
        token += ch if depth == 0 and ch not in "\n" else ""
        if ch == "," and depth == 0:
            token = ""
    return fields


def test_rendered_tfvars_match_the_declared_variable_types(module, prod) -> None:
    tfvars = json.loads(TFVARS.read_text())
    env_vars = blocks(prod, "variable")
    assert set(tfvars) <= set(env_vars)
    unset = {n for n, b in env_vars.items() if "default" not in b} - set(tfvars)
    assert unset == set()
    for folder_vars in (blocks(module, "variable"), env_vars):
        ng_fields = _object_fields(folder_vars["node_groups"]["type"])
        team_fields = _object_fields(folder_vars["teams"]["type"])
        for group in tfvars["node_groups"].values():
            assert set(group) == ng_fields
        for team in tfvars["teams"].values():
            assert set(team) == team_fields


def test_object_type_parser_sees_a_missing_field() -> None:
    expr = "${map(object({pool = string, labels = map(string), taints = list(object({key = string}))}))}"
    assert _object_fields(expr) == {"pool", "labels", "taints"}
    assert _object_fields(expr.replace("pool = string, ", "")) == {"labels", "taints"}
