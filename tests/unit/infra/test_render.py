"""`mlplat cluster render`: committed output is current, deterministic, and follows its sources."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from mlplat.cluster import GENERATED, parse_taint, render_all, stale_files, write_rendered
from mlplat.config import load_config
from mlplat.errors import UserError
from tests.unit.infra.conftest import CLUSTER, REPO, TFVARS, load_docs, pod_templates


def test_committed_cluster_and_tfvars_are_current(rendered) -> None:
    stale = stale_files(rendered, CLUSTER, TFVARS)
    assert stale == [], f"stale generated files {stale}: run `mlplat cluster render` and commit"


def test_render_is_deterministic(cfg, rendered) -> None:
    again = render_all(cfg, REPO)
    assert again == rendered
    assert all(text.startswith(GENERATED) for text in rendered.cluster.values())


def _mini_repo(tmp_path: Path) -> Path:
    """A repository with the render's inputs only: platform.yaml, pyproject, apps, jobs."""
    for name in ["platform.yaml", "pyproject.toml"]:
        shutil.copy(REPO / name, tmp_path / name)
    (tmp_path / "apps" / "fraud").mkdir(parents=True)
    shutil.copy(REPO / "apps" / "fraud" / "app.yaml", tmp_path / "apps" / "fraud" / "app.yaml")
    shutil.copytree(REPO / "jobs", tmp_path / "jobs")
    return tmp_path


def _serve_config(rendered, app: str = "fraud") -> dict[str, Any]:
    (svc,) = load_docs(rendered.cluster[f"rayservices/{app}.yaml"])
    return yaml.safe_load(svc["spec"]["serveConfigV2"])


def test_serve_config_is_built_from_app_yaml_without_serve_config(tmp_path: Path) -> None:
    repo = _mini_repo(tmp_path)
    cfg = load_config(repo / "platform.yaml")
    (app,) = _serve_config(render_all(cfg, repo))["applications"]
    assert app["route_prefix"] == "/v1/models/fraud" and app["args"] == {"app": "fraud"}
    (router,) = app["deployments"]
    assert router["ray_actor_options"]["label_selector"] == {"pool": "serving-ondemand"}
    assert router["ray_actor_options"]["num_cpus"] == 0.5


def test_serve_config_yaml_is_embedded_when_the_app_has_one(tmp_path: Path) -> None:
    repo = _mini_repo(tmp_path)
    own: dict[str, Any] = {"http_options": {"host": "127.0.0.1"}, "applications": [{"name": "fraud", "import_path": "apps.fraud.serve:app",
                             "route_prefix": "/v1/models/fraud"}]}
    (repo / "apps" / "fraud" / "serve_config.yaml").write_text(yaml.safe_dump(own))
    cfg = load_config(repo / "platform.yaml")
    embedded = _serve_config(render_all(cfg, repo))
    assert embedded["applications"] == own["applications"]
    # A local config's loopback proxy is replaced: KubeRay's serve Service must reach it.
    assert embedded["http_options"] == {"host": "0.0.0.0", "port": 8000}
    # A single application (no `applications:` list) is wrapped into one.
    (repo / "apps" / "fraud" / "serve_config.yaml").write_text(yaml.safe_dump(own["applications"][0]))
    assert _serve_config(render_all(cfg, repo)) == embedded
    (repo / "apps" / "fraud" / "serve_config.yaml").write_text("- [unclosed")
    with pytest.raises(UserError, match=r"serve_config\.yaml: not valid YAML"):
        render_all(cfg, repo)


def test_monitoring_files_become_configmaps_and_orphans_are_removed(tmp_path: Path) -> None:
    repo = _mini_repo(tmp_path)
    mon = repo / "cluster" / "monitoring"
    mon.mkdir(parents=True)
    (mon / "prometheus-rules.yaml").write_text("groups: []\n")
    (mon / "grafana-dashboard.json").write_text('{"title": "mlplat"}\n')
    (repo / "cluster" / "README.md").write_text("hand-written\n")
    (repo / "cluster" / "old.yaml").write_text(GENERATED + "kind: Gone\n")
    cfg = load_config(repo / "platform.yaml")
    rendered = render_all(cfg, repo)
    tfvars = repo / "terraform" / "prod.tfvars.json"
    assert stale_files(rendered, repo / "cluster", tfvars)
    write_rendered(rendered, repo / "cluster", tfvars)
    assert stale_files(rendered, repo / "cluster", tfvars) == []
    assert not (repo / "cluster" / "old.yaml").exists()
    assert (repo / "cluster" / "README.md").read_text() == "hand-written\n"
    assert (mon / "prometheus-rules.yaml").read_text() == "groups: []\n"
    maps = {d["metadata"]["name"]: d for d in
            load_docs((repo / "cluster" / "monitoring-configmaps.yaml").read_text())}
    assert maps["mlplat-monitoring-prometheus-rules"]["data"] == {"prometheus-rules.yaml": "groups: []\n"}
    assert maps["mlplat-monitoring-grafana-dashboard"]["metadata"]["labels"]["grafana_dashboard"] == "1"
    kustomization = load_docs((repo / "cluster" / "kustomization.yaml").read_text())[0]
    assert "monitoring-configmaps.yaml" in kustomization["resources"]


def test_cli_check_fails_on_stale_output_and_render_fixes_it(tmp_path: Path) -> None:
    from mlplat.cli import app

    repo = _mini_repo(tmp_path)
    args = ["cluster", "render", "--config", str(repo / "platform.yaml")]
    runner = CliRunner()
    stale = runner.invoke(app, [*args, "--check"])
    assert stale.exit_code == 1 and "run `mlplat cluster render`" in stale.output
    assert runner.invoke(app, args).exit_code == 0
    assert (repo / "terraform/environments/prod/platform.auto.tfvars.json").is_file()
    assert runner.invoke(app, [*args, "--check"]).exit_code == 0
    # Editing platform.yaml (a team's quota) makes the committed output stale again.
    text = (repo / "platform.yaml").read_text().replace("gpu: 16, memory_gib: 2048", "gpu: 12, memory_gib: 2048")
    (repo / "platform.yaml").write_text(text)
    assert runner.invoke(app, [*args, "--check"]).exit_code == 1


def test_malformed_taint_names_the_pool_and_the_fix() -> None:
    assert parse_taint("cpu", "a.io/b=c:NoExecute").terraform() == {
        "key": "a.io/b", "value": "c", "effect": "NO_EXECUTE"}
    with pytest.raises(UserError, match=r"pools.training-spot.taints: 'gpu:NoSchedule'.*key=value:Effect"):
        parse_taint("training-spot", "gpu:NoSchedule")


def test_unknown_profile_is_a_user_error(cfg) -> None:
    with pytest.raises(UserError, match="Unknown profile 'staging'"):
        render_all(cfg, REPO, profile="staging")


def test_priority_classes_follow_scheduling_and_training_never_preempts(cfg, resources) -> None:
    classes = {d["metadata"]["name"]: d for d in resources if d["kind"] == "PriorityClass"}
    assert set(classes) == set(cfg.scheduling.priority_classes)
    for name, pc in cfg.scheduling.priority_classes.items():
        assert classes[name]["value"] == pc.value
        assert classes[name]["preemptionPolicy"] == ("PreemptLowerPriority" if pc.preempts else "Never")
    serving_classes = {n for n, pc in cfg.scheduling.priority_classes.items() if pc.preempts}
    for pod in [pod for _, pod in pod_templates(resources)]:
        pool = pod["metadata"]["labels"]["mlplat.io/pool"]
        prio = pod["spec"]["priorityClassName"]
        assert prio in classes
        if pool == "training-spot":
            assert prio not in serving_classes, "training pods must never preempt"
    for svc in (d for d in resources if d["kind"] == "RayService"):
        for group in svc["spec"]["rayClusterConfig"]["workerGroupSpecs"]:
            assert group["template"]["spec"]["priorityClassName"] in serving_classes


def test_spot_workers_drain_before_the_spot_notice_runs_out(cfg, resources) -> None:
    spot = [p for p in [pod for _, pod in pod_templates(resources)]
            if cfg.pools[p["metadata"]["labels"]["mlplat.io/pool"]].capacity == "spot"]
    assert spot
    for pod in spot:
        (container,) = pod["spec"]["containers"]
        command = " ".join(container["lifecycle"]["preStop"]["exec"]["command"])
        assert "ray drain-node --reason DRAIN_NODE_REASON_PREEMPTION" in command
        deadline = int(command.split("--deadline-remaining-seconds ")[1].split()[0])
        assert deadline < pod["spec"]["terminationGracePeriodSeconds"] < 120  # AWS spot notice


def test_worker_groups_carry_the_local_clusters_pool_labels_and_resources(cfg, resources) -> None:
    (rc,) = [d for d in resources if d["kind"] == "RayCluster"]
    groups = {g["groupName"]: g for g in rc["spec"]["workerGroupSpecs"]}
    assert set(groups) == set(cfg.pools)
    for name, pool in cfg.pools.items():
        group = groups[name]
        assert group["labels"] == {"pool": name}
        assert list(group["resources"]) == [f"pool:{name}"]
        head = name == cfg.local_cluster.head_pool
        assert group["maxReplicas"] == pool.max_nodes - head
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert int(limits.get("nvidia.com/gpu", 0)) == pool.gpus_per_node
        assert int(limits["cpu"]) <= pool.cpus_per_node
    assert rc["spec"]["headGroupSpec"]["labels"] == {"pool": cfg.local_cluster.head_pool}
    assert rc["spec"]["gcsFaultToleranceOptions"]["redisAddress"].startswith("redis://")


def test_rayjob_templates_carry_team_metadata(cfg, resources) -> None:
    jobs = {d["metadata"]["name"]: d for d in resources if d["kind"] == "RayJob"}
    train = jobs["fraud-train"]
    assert train["metadata"]["namespace"] == "team-risk"
    assert train["spec"]["metadata"]["team"] == "risk"
    assert train["spec"]["metadata"]["pool"] == "training-spot"
    assert train["spec"]["entrypoint"] == "python jobs/train.py --app fraud --dataset ${DATASET}"
    entrypoints = {p.stem for p in (REPO / "jobs").glob("*.py") if not p.name.startswith("_")}
    covered = {d["spec"]["entrypoint"].split()[1].removeprefix("jobs/").removesuffix(".py")
               for d in jobs.values()}
    assert covered == entrypoints


def test_each_app_gets_ingresses_with_the_local_ingress_replay_policy(rendered, cfg) -> None:
    """Production replays what the local ingress replays (one policy, mlplat.cluster), data
    routes only, to the Service KubeRay creates for the RayService."""
    from pathlib import Path

    from mlplat.cluster import INGRESS_REPLAYED_ON, INGRESS_RETRY_TRIES
    from mlplat.deployment import render_ingress_conf

    for name in ("fraud", "llm"):
        data, admin = load_docs(rendered.cluster[f"ingresses/{name}.yaml"])
        serve = _serve_config(rendered, name)
        prefix, port = serve["applications"][0]["route_prefix"], serve["http_options"]["port"]
        (service,) = load_docs(rendered.cluster[f"rayservices/{name}.yaml"])
        for doc, path in ((data, prefix), (admin, f"{prefix}/admin")):
            (rule,) = doc["spec"]["rules"]
            (route,) = rule["http"]["paths"]
            assert route["path"] == path and route["pathType"] == "Prefix"
            assert route["backend"]["service"] == {"name": f"{name}-serve-svc",
                                                   "port": {"number": port}}
            assert doc["metadata"]["namespace"] == service["metadata"]["namespace"]
        ann = "nginx.ingress.kubernetes.io/"
        assert data["metadata"]["annotations"][f"{ann}proxy-next-upstream"] == INGRESS_REPLAYED_ON
        assert data["metadata"]["annotations"][f"{ann}proxy-next-upstream-tries"] == \
            str(INGRESS_RETRY_TRIES)
        assert admin["metadata"]["annotations"][f"{ann}proxy-next-upstream"] == "off"
        for doc in (data, admin):  # one body limit, platform.yaml's, at both ingresses
            assert doc["metadata"]["annotations"][f"{ann}proxy-body-size"] == \
                str(cfg.requests.max_body_bytes)
    local = render_ingress_conf(Path("/tmp/x"), 8080, 8000, cfg.requests.max_body_bytes)
    assert f"client_max_body_size {cfg.requests.max_body_bytes};" in local
    assert f"proxy_next_upstream {INGRESS_REPLAYED_ON};" in local
    assert f"proxy_next_upstream_tries {INGRESS_RETRY_TRIES};" in local
