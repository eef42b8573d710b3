"""Local stand-ins (real TorchScript, no Ray), the audit wrapper and the light public import."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mlplat.audit._sink import audited
from mlplat.contracts.v1 import TrafficSplit
from mlplat.deployment import InMemoryFeatureLookup, LocalModelLoader, RouterCore, save_local_model
from mlplat.errors import InfraError, NotFoundError
from tests.unit.deployment.conftest import make_card, preprocessor_for


def test_local_loader_round_trips_a_torchscript_model(tmp_path, fraud_app, lookup) -> None:
    import torch

    pre = preprocessor_for(fraud_app.features)
    net = torch.nn.Linear(pre.width, 1)
    with torch.no_grad():
        net.weight.zero_()
        net.bias.fill_(1.0)
    save_local_model(tmp_path, "fraud", "1", torch.jit.script(net), pre, fraud_app.features,
                     make_card(fraud_app, "1"), {"val_auc": 0.8})
    loader = LocalModelLoader(str(tmp_path))
    model = loader("fraud", "1")
    assert model.metrics == {"val_auc": 0.8} and model.card.version == "1"
    assert model.predict_proba([{"amount": 3.0}]) == pytest.approx([0.7310586], abs=1e-6)
    with pytest.raises(NotFoundError, match=r"versions there: \['1'\]"):
        loader("fraud", "2")

    core = RouterCore("fraud", fraud_app.features, 0.5, loader, lookup)
    core.apply({"model": "fraud", "split": TrafficSplit(weights={"1": 100}).model_dump()})
    status, out, _ = core.respond(b'{"entity": {"account_id": 1}, "features": '
                                  b'{"amount": 5, "merchant_category": "travel"}}')
    assert status == 200 and out["label"] == 1 and out["score"] == pytest.approx(0.7310586)


def test_in_memory_lookup_is_its_own_factory(platform_config, fraud_app) -> None:
    lookup = InMemoryFeatureLookup(("account_id",), ({"account_id": 1, "x": 2.0},))
    assert lookup(platform_config, fraud_app) is lookup
    assert lookup.get([{"account_id": 1}, {"account_id": 5}]) == [{"x": 2.0}, {}]


def test_audited_records_outcomes() -> None:
    events = []

    def sink(actor, action, target, reason="", details=None, outcome="ok"):
        events.append((action, outcome, details))

    with audited(sink, actor="a", action="deployment.deploy", target="fraud") as d:
        d["url"] = "http://x"
    with pytest.raises(ValueError), audited(sink, actor="a", action="deployment.deploy",
                                            target="fraud"):
        raise ValueError("bad")
    assert events[0] == ("deployment.deploy", "ok", {"url": "http://x"})
    assert events[1][1] == "failed" and "ValueError: bad" in events[1][2]["error"]

    def broken(*a, **k):
        raise OSError("disk full")

    with pytest.raises(InfraError, match="took effect but could not be written"), audited(
            broken, actor="a", action="deployment.set_traffic", target="fraud"):
        pass


def test_public_import_is_light() -> None:
    code = ("import sys, mlplat.deployment; "
            "print(any(m in sys.modules for m in ('ray.serve', 'torch', 'fastapi')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
