"""Lineage: raw data files → feature views → dataset (SHA-256) → training run → model version
→ deployments (with time ranges), assembled from the records each plane already keeps.

- model version and run: the MLflow registry (version tags ``run_id``, ``dataset_sha256``,
  ``card_sha256``; the run's name, status and times);
- dataset, feature views and raw files: the data plane's ``DatasetManifest`` whose
  ``content_sha256`` is the version's ``dataset_sha256`` (looked up under
  ``<root>/datasets/`` and any extra folders given); ``source_paths[0]`` is the label set and
  ``source_paths[i]`` the source of the i-th feature view;
- deployments: the audit log's ``deployment.*`` records (deploy, traffic changes, promotion
  steps, rollbacks, undeploy), so time ranges are the ones that were actually applied.

Nothing is stored twice: the graph is rebuilt on every call.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from mlplat.config import PlatformConfig
from mlplat.errors import NotFoundError, UserError

_EVAL_TAGS = ("eval_dataset_sha256", "evaluation_dataset_sha256")


@dataclass
class LineageNode:
    """One artifact: ``kind`` ∈ raw_file, feature_view, dataset, run, model_version, deployment."""

    id: str
    kind: str
    label: str
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class LineageGraph:
    """Nodes and ``(source, target, label)`` edges in data-flow direction, around ``root``.

    Example:
        >>> g = lineage_graph(cfg, "fraud", "3")
        >>> [n.kind for n in g.upstream()][:2]
        ['run', 'dataset']
    """

    root: str
    nodes: dict[str, LineageNode] = field(default_factory=dict)
    edges: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, node: LineageNode) -> str:
        self.nodes.setdefault(node.id, node)
        return node.id

    def link(self, src: str, dst: str, label: str = "") -> None:
        if (src, dst, label) not in self.edges:
            self.edges.append((src, dst, label))

    def _walk(self, start: str, forward: bool) -> list[tuple[int, LineageNode, str]]:
        out: list[tuple[int, LineageNode, str]] = []
        seen = {start}

        def visit(node: str, depth: int) -> None:
            for src, dst, label in self.edges:
                nxt = dst if forward and src == node else src if not forward and dst == node \
                    else None
                if nxt is not None and nxt not in seen:
                    seen.add(nxt)
                    out.append((depth, self.nodes[nxt], label))
                    visit(nxt, depth + 1)

        visit(start, 0)
        return out

    def upstream(self) -> list[LineageNode]:
        """Everything the root was derived from, nearest first."""
        return [n for _, n, _ in self._walk(self.root, forward=False)]

    def downstream(self) -> list[LineageNode]:
        """Everything derived from the root (deployments of a model version)."""
        return [n for _, n, _ in self._walk(self.root, forward=True)]

    def to_text(self) -> str:
        """An indented upstream / downstream listing for people."""
        root = self.nodes[self.root]
        lines = [f"{root.label}  [{root.kind}]", "upstream:"]
        up = self._walk(self.root, forward=False)
        lines += [f"{'  ' * (d + 1)}← {n.label}  [{n.kind}]" + (f" ({lab})" if lab else "")
                  for d, n, lab in up] or ["  (none recorded)"]
        lines.append("downstream:")
        down = self._walk(self.root, forward=True)
        lines += [f"{'  ' * (d + 1)}→ {n.label}  [{n.kind}]" + (f" ({lab})" if lab else "")
                  for d, n, lab in down] or ["  (never deployed)"]
        return "\n".join(lines)

    def to_mermaid(self) -> str:
        """A Mermaid ``flowchart LR`` (paste into Markdown, GitHub renders it)."""
        ids = {nid: f"n{i}" for i, nid in enumerate(self.nodes)}
        shapes = {"raw_file": ('[/"', '"/]'), "feature_view": ('[["', '"]]'),
                  "dataset": ('[("', '")]'), "run": ('("', '")'),
                  "model_version": ('{{"', '"}}'), "deployment": ('(["', '"])')}
        lines = ["flowchart LR"]
        for nid, n in self.nodes.items():
            left, right = shapes.get(n.kind, ('["', '"]'))
            text = f"{n.kind}: {n.label}".replace('"', "#quot;")
            lines.append(f"    {ids[nid]}{left}{text}{right}")
        for src, dst, label in self.edges:
            arrow = f" -->|{label.replace('|', '/')}| " if label else " --> "
            lines.append(f"    {ids[src]}{arrow}{ids[dst]}")
        lines.append(f"    style {ids[self.root]} stroke-width:3px")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {"root": self.root,
                "nodes": [{"id": n.id, "kind": n.kind, "label": n.label, "attrs": n.attrs}
                          for n in self.nodes.values()],
                "edges": [{"source": s, "target": t, "label": lab} for s, t, lab in self.edges]}


def parse_ref(ref: str) -> tuple[str, str]:
    """``"fraud:3"`` → ``("fraud", "3")``; ``"fraud@production"`` keeps the alias for lookup.

    Raises:
        UserError: neither form.
    """
    for sep in (":", "@"):
        name, found, version = ref.partition(sep)
        if found and name and version:
            return name, (version if sep == ":" else "@" + version)
    raise UserError(f"Lineage reference {ref!r} must be MODEL:VERSION (e.g. fraud:3) or "
                    "MODEL@ALIAS (e.g. fraud@production).")


def find_manifest(cfg: PlatformConfig, sha256: str, model: str | None = None,
                  extra_dirs: list[Path] | None = None) -> Path | None:
    """The ``manifest.json`` whose ``content_sha256`` is ``sha256``, or None.

    Looks at the data plane's default place first (``<root>/datasets/<model>/<sha[:12]>``),
    then every manifest under ``<root>/datasets/`` and ``extra_dirs`` (two levels deep).
    """
    roots: list[Path] = list(extra_dirs or [])
    root = cfg.root()
    if "://" not in root:
        roots.insert(0, Path(root) / "datasets")
    candidates: list[Path] = []
    for base in roots:
        if model:
            candidates.append(base / model / sha256[:12] / "manifest.json")
        candidates += [base / "manifest.json", *sorted(base.glob("*/manifest.json")),
                       *sorted(base.glob("*/*/manifest.json"))]
    for path in candidates:
        try:
            if json.loads(path.read_text()).get("content_sha256") == sha256:
                return path
        except (OSError, ValueError, AttributeError):
            continue
    return None


def _dataset_nodes(g: LineageGraph, cfg: PlatformConfig, sha: str, model: str,
                   dataset_dirs: list[Path] | None, role: str) -> str:
    from mlplat.data import read_manifest

    dataset_id = g.add(LineageNode(f"dataset:{sha}", "dataset", f"{sha[:12]}…",
                                   {"sha256": sha, "role": role}))
    path = find_manifest(cfg, sha, model, dataset_dirs)
    node = g.nodes[dataset_id]
    if path is None:
        node.attrs["manifest"] = "not found under <root>/datasets (pass --dataset-dir)"
        return dataset_id
    m = read_manifest(path)
    node.label = f"{sha[:12]}… ({m.row_count} rows, {path.parent})"
    node.attrs.update({"manifest": str(path), "rows": m.row_count, "path": m.path,
                       "created_at": m.created_at.isoformat()})
    views = list(m.feature_spec.feature_views)
    sources = list(m.source_paths)
    if sources:
        raw = g.add(LineageNode(f"raw:{sources[0]}", "raw_file", sources[0],
                                {"exists": Path(sources[0]).exists()}))
        g.link(raw, dataset_id, "labels")
    for i, view in enumerate(views):
        version = m.feature_view_versions.get(view.name, view.version)
        fv = g.add(LineageNode(f"fv:{view.name}:{version}", "feature_view",
                               f"{view.name} (version {version[:12] or '?'})",
                               {"features": list(view.features), "ttl_s": view.ttl_s,
                                "version": version}))
        g.link(fv, dataset_id, "as-of join")
        if i + 1 < len(sources):
            raw = g.add(LineageNode(f"raw:{sources[i + 1]}", "raw_file", sources[i + 1],
                                    {"exists": Path(sources[i + 1]).exists()}))
            g.link(raw, fv, "source")
    return dataset_id


def deployment_ranges(events: list[Any], model: str, version: str,
                      now: datetime | None = None) -> list[dict[str, Any]]:
    """Time ranges in which ``version`` took live (or shadow) traffic, from audit events.

    Each range: ``app``, ``role`` (live/shadow), ``start``, ``end`` (None: still on),
    ``max_weight``, ``weights`` (the weights it had, in order).

    Example:
        >>> deployment_ranges(AuditLog(cfg).events(action_prefix="deployment."), "fraud", "3")
        [{'app': 'fraud', 'role': 'live', 'start': ..., 'end': None, 'max_weight': 100.0, ...}]
    """
    open_: dict[tuple[str, str], dict[str, Any]] = {}
    done: list[dict[str, Any]] = []
    app_model: dict[str, str] = {}
    for e in events:
        if e.outcome != "ok" or not e.action.startswith("deployment."):
            continue
        app, d = e.target, e.details
        if isinstance(d.get("model"), str):
            app_model[app] = d["model"]
        if app_model.get(app, app) != model:
            continue
        if e.action == "deployment.undeploy":
            split: dict[str, Any] | None = {"weights": {}, "shadow": None}
        else:
            split = d.get("to") or d.get("split")
        if not isinstance(split, dict) or not isinstance(split.get("weights"), dict):
            continue
        weight = float(split["weights"].get(version, 0) or 0)
        role = "live" if weight > 0 else "shadow" if split.get("shadow") == version else None
        for key in [k for k in open_ if k[0] == app and k[1] != role]:
            rng = open_.pop(key)
            rng["end"] = e.ts
            done.append(rng)
        if role is None:
            continue
        rng = open_.setdefault((app, role), {"app": app, "role": role, "start": e.ts,
                                             "end": None, "max_weight": 0.0, "weights": []})
        if role == "live" and (not rng["weights"] or rng["weights"][-1] != weight):
            rng["weights"].append(weight)
            rng["max_weight"] = max(rng["max_weight"], weight)
    done += open_.values()
    return sorted(done, key=lambda r: r["start"])


def lineage_graph(cfg: PlatformConfig, model: str, version: str,
                  dataset_dirs: list[Path] | None = None, audit: Any = None) -> LineageGraph:
    """Build the lineage graph around one model version.

    Args:
        cfg: Platform config (registry, storage root, audit store).
        model: Registered model name.
        version: Version number, or ``@alias`` (e.g. ``@production``).
        dataset_dirs: Extra folders holding dataset manifests (outside ``<root>/datasets``).
        audit: An ``AuditLog`` to read deployments from (default: the profile's).

    Raises:
        NotFoundError: unknown model, version or alias (the message lists the known ones).

    Example:
        >>> print(lineage_graph(cfg, "fraud", "3").to_mermaid())
        flowchart LR
        ...
    """
    from mlflow import MlflowClient

    from mlplat.experiment import get_alias, list_versions, tracking_uri

    if version.startswith("@"):
        resolved = get_alias(cfg, model, version[1:])
        if resolved is None:
            raise NotFoundError(f"Model '{model}' has no alias '{version[1:]}'.")
        version = resolved
    versions = list_versions(cfg, model)
    found = next((v for v in versions if v["version"] == str(version)), None)
    if found is None:
        raise NotFoundError(f"Model '{model}' has no version '{version}'. "
                            f"Versions: {[v['version'] for v in versions]}.")
    tags = found.get("tags", {})
    g = LineageGraph(root=f"model:{model}:{version}")
    g.add(LineageNode(g.root, "model_version", f"{model} v{version}",
                      {"aliases": found.get("aliases", []),
                       "card_sha256": tags.get("card_sha256"),
                       "created_at_ms": found.get("created_at_ms")}))
    run_id = found.get("run_id") or tags.get("run_id")
    upstream_of_model = g.root
    if run_id:
        uri = tracking_uri(cfg)
        attrs: dict[str, Any] = {"run_id": run_id}
        label = f"run {run_id[:12]}"
        try:
            run = MlflowClient(tracking_uri=uri, registry_uri=uri).get_run(run_id)
            attrs.update({"name": run.info.run_name, "status": run.info.status,
                          "start_ms": run.info.start_time, "end_ms": run.info.end_time})
            label = f"{run.info.run_name} (run {run_id[:12]}, {run.info.status})"
            tags = {**run.data.tags, **tags}
        except Exception as exc:  # a deleted run still leaves the version's record
            attrs["error"] = str(exc)
        upstream_of_model = g.add(LineageNode(f"run:{run_id}", "run", label, attrs))
        g.link(upstream_of_model, g.root, "registered")
    sha = tags.get("dataset_sha256")
    if sha:
        ds = _dataset_nodes(g, cfg, sha, model, dataset_dirs, "training")
        g.link(ds, upstream_of_model, "trained on")
    for key in _EVAL_TAGS:
        if tags.get(key) and tags[key] != sha:
            ds = _dataset_nodes(g, cfg, tags[key], model, dataset_dirs, "evaluation")
            g.link(ds, upstream_of_model, "evaluated on")
            break
    if audit is None:
        try:
            from mlplat.audit._log import AuditLog

            audit = AuditLog(cfg)
        except Exception:  # no audit store reachable: no deployments shown
            audit = None
    if audit is not None:
        for r in deployment_ranges(audit.events(action_prefix="deployment."), model, version):
            end = r["end"].isoformat(timespec="seconds") if r["end"] else "now"
            weights = "→".join(f"{w:g}%" for w in r["weights"])
            label = (f"{r['app']} {r['role']} {weights} "
                     f"{r['start'].isoformat(timespec='seconds')} … {end}")
            node = g.add(LineageNode(f"deploy:{r['app']}:{r['role']}:{r['start'].isoformat()}",
                                     "deployment", label.replace("  ", " "),
                                     {**r, "start": r["start"].isoformat(),
                                      "end": r["end"].isoformat() if r["end"] else None}))
            g.link(g.root, node, "served by")
    return g
