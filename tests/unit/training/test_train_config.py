"""Override validation, run-name checks and the tenant model contract (no Ray)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mlplat.apps import AppConfig, load_app
from mlplat.errors import UserError
from mlplat.training import apply_overrides, default_run_name, load_model_builder
from mlplat.training._train import _check_run_reuse, _export


@pytest.fixture()
def app(platform_config) -> AppConfig:
    return load_app("fraud", platform_config)


def test_overrides_are_applied_and_coerced(app: AppConfig) -> None:
    tcfg = apply_overrides(app.training, {"learning_rate": "0.02", "hidden_units": "16"})
    assert tcfg.learning_rate == 0.02 and tcfg.hidden_units == 16
    assert tcfg.epochs == app.training.epochs  # untouched keys keep app.yaml's values
    assert app.training.hidden_units == 32  # the app's own config is not mutated


def test_unknown_override_names_key_and_valid_keys(app: AppConfig) -> None:
    with pytest.raises(
        UserError,
        match=r"Unknown training override 'learning_rat'\. "
        r"Did you mean 'learning_rate'\?.*Valid keys: \[.*'hidden_units'",
    ):
        apply_overrides(app.training, {"learning_rat": 0.1})


def test_invalid_override_value_names_field_and_value(app: AppConfig) -> None:
    with pytest.raises(UserError, match=r"epochs='zero'"):
        apply_overrides(app.training, {"epochs": "zero"})
    with pytest.raises(
        UserError, match=r"num_workers=0: Input should be greater than or equal to 1"
    ):
        apply_overrides(app.training, {"num_workers": 0})
    with pytest.raises(UserError, match=r"pool='gpu-pool'"):
        apply_overrides(app.training, {"pool": "gpu-pool"})


def test_default_run_name_is_unique_and_prefixed(app: AppConfig) -> None:
    a, b = default_run_name(app), default_run_name(app)
    assert a.startswith("fraud-") and a != b


def test_model_output_is_one_logit_per_row(app: AppConfig) -> None:
    build = load_model_builder(app)
    model = build(12, 8)
    assert model(torch.randn(7, 12)).shape == (7,)
    assert model(torch.randn(1, 12)).shape == (1,)  # a single request stays a batch of one


def test_export_is_torchscript_with_same_outputs(app: AppConfig, tmp_path: Path) -> None:
    model = load_model_builder(app)(5, 4)
    _export(model, 5, tmp_path / "model.pt")
    loaded = torch.jit.load(str(tmp_path / "model.pt"))
    x = torch.randn(3, 5)
    torch.testing.assert_close(loaded(x), model(x))


def test_model_builder_pickles_by_value(app: AppConfig) -> None:
    """Workers may not have apps/ on sys.path: the builder's code must travel in the pickle."""
    import sys

    from ray import cloudpickle

    build = load_model_builder(app)
    payload = cloudpickle.dumps(build)
    name = build.__module__
    saved = sys.modules.pop(name)
    try:
        rebuilt = cloudpickle.loads(payload)
        assert rebuilt(3, 2)(torch.zeros(4, 3)).shape == (4,)
    finally:
        sys.modules[name] = saved


def test_run_reuse_with_another_model_shape_is_refused(tmp_path: Path) -> None:
    run_dir = str(tmp_path / "checkpoints" / "nightly")
    first = {
        "app": "fraud",
        "dataset_sha256": "a" * 64,
        "hidden_units": 32,
        "input_width": 15,
        "seed": 7,
    }
    _check_run_reuse(run_dir, first)
    _check_run_reuse(run_dir, first)  # same shape: resuming is fine
    with pytest.raises(
        UserError,
        match=r"Run 'nightly' already has checkpoints .*hidden_units.*"
        r"Pick another --run-name",
    ):
        _check_run_reuse(run_dir, {**first, "hidden_units": 16})
