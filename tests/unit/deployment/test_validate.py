"""Bad predict bodies are 4xx errors that name the offending field."""

from __future__ import annotations

import json

import pytest

from mlplat.deployment import RequestError, parse_predict_request

NUMERIC = {"amount"}
CATEGORICAL = {"merchant_category"}


def body(**over):
    b = {"entity": {"account_id": 7}, "features": {"amount": 12.5, "merchant_category": "travel"}}
    b.update(over)
    return json.dumps(b)


def parse(fraud_app, raw):
    return parse_predict_request(raw, fraud_app.features, NUMERIC, CATEGORICAL)


def test_valid_body_parses(fraud_app) -> None:
    req = parse(fraud_app, body(request_id="r1"))
    assert req.entity == {"account_id": 7}
    assert req.features["amount"] == 12.5
    assert req.request_id == "r1"


def test_null_request_feature_is_allowed(fraud_app) -> None:
    req = parse(fraud_app, body(features={"amount": None, "merchant_category": "travel"}))
    assert req.features["amount"] is None


@pytest.mark.parametrize(
    ("raw", "field", "message"),
    [
        (b"{not json", "<body>", "not valid JSON"),
        (b"\xff\xfe", "<body>", "not valid JSON"),
        (b"[1, 2]", "<body>", "must be a JSON object"),
        (json.dumps({"entity": {"account_id": 7}, "features": {"amount": 1.0,
                     "merchant_category": "x"}, "extra": 1}), "extra", "unknown key 'extra'"),
        (body(entity={}), "entity.account_id", "missing entity key 'account_id'"),
        (body(entity={"account_id": 7, "acount": 1}), "entity.acount",
         "Did you mean 'account_id'"),
        (body(entity={"account_id": 1.5}), "entity.account_id", "integer or a string"),
        (body(entity={"account_id": True}), "entity.account_id", "integer or a string"),
        (body(entity=[7]), "entity", "must be an object"),
        (body(features={"amount": 1.0}), "features.merchant_category", "missing request feature"),
        (body(features={"amount": 1.0, "merchant_category": "x", "amnt": 2}), "features.amnt",
         "Did you mean 'amount'"),
        (body(features={"amount": "12", "merchant_category": "x"}), "features.amount",
         "must be a number"),
        (body(features={"amount": True, "merchant_category": "x"}), "features.amount",
         "must be a number"),
        (body(features={"amount": 1.0, "merchant_category": 3}), "features.merchant_category",
         "must be a string"),
        (body(features={"amount": [1], "merchant_category": "x"}), "features.amount",
         "must be a number"),
        (body(features="amount=1"), "features", "must be an object"),
        (body(request_id=5), "request_id", "must be a string"),
    ],
)
def test_bad_bodies_name_the_field(fraud_app, raw, field, message) -> None:
    with pytest.raises(RequestError, match=message) as info:
        parse(fraud_app, raw)
    assert info.value.field == field
    assert info.value.http_status == 400
