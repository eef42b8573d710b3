"""Synthetic card transactions for the fraud app: the label set and the two raw feature tables.

The generator is a small simulation rather than independent random columns, so that the
point-in-time join has something real to get right:

* ``transactions.parquet`` is the label set: one row per transaction with the request
  features (``amount``, ``merchant_category``) and ``is_fraud``.
* ``account_profile.parquet`` holds profile snapshots. Some accounts get a later credit-limit
  change, and some snapshots are re-issued with the same ``event_timestamp`` and a later
  ``created_timestamp`` (a correction): the join must take the latest write.
* ``account_txn_stats.parquet`` holds hourly snapshots of the true rolling-window activity of
  each account active in the previous 7 days, computed from the transactions themselves. A
  transaction at 10:37 therefore sees the 10:00 snapshot, which does not include itself.

Fraud is drawn from a logistic model of the amount relative to the account's 7-day average,
short bursts of activity, the account's home risk score and risky merchant categories; the
intercept is solved so the fraud rate is the requested one (8 % by default).

Example:
    >>> from pathlib import Path
    >>> from datetime import datetime, timezone
    >>> paths = generate(Path("/tmp/fraud-raw"), n_accounts=50, days=3,
    ...                  end=datetime(2025, 1, 10, tzinfo=timezone.utc))
    >>> sorted(paths)
    ['account_profile', 'account_txn_stats', 'transactions']
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

LABEL_TABLE = "transactions"
"""The label set among the tables `generate` writes (`mlplat data build fraud` reads it)."""

CATEGORIES = [
    "grocery",
    "restaurant",
    "fuel",
    "travel",
    "online_retail",
    "electronics",
    "gift_cards",
    "atm",
]
CATEGORY_WEIGHTS = [0.26, 0.2, 0.12, 0.06, 0.18, 0.07, 0.04, 0.07]
RISKY_CATEGORIES = frozenset({"electronics", "gift_cards"})
FIRST_ACCOUNT_ID = 100_000

_HOUR = np.timedelta64(3600, "s").astype("timedelta64[ns]").astype(np.int64)
_DAY = 24 * _HOUR
_WEEK = 7 * _DAY


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _solve_intercept(logit_wo_bias: np.ndarray, target_rate: float) -> float:
    # Bisection on the bias so E[sigmoid] hits the target exactly, whatever the other terms are.
    lo, hi = -30.0, 30.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if _sigmoid(logit_wo_bias + mid).mean() > target_rate:
            hi = mid
        else:
            lo = mid
    return (lo + hi) / 2


def _default_end() -> datetime:
    # Whole hours, so a demo run materializes features that are still inside their TTL.
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def _window_stats(
    times: np.ndarray, amounts: np.ndarray, at: np.ndarray, window: int
) -> tuple[np.ndarray, np.ndarray]:
    """Count and sum of events with ``at - window < t <= at`` (times sorted, int ns)."""
    csum = np.concatenate([[0.0], np.cumsum(amounts)])
    hi = np.searchsorted(times, at, side="right")
    lo = np.searchsorted(times, at - window, side="right")
    return hi - lo, csum[hi] - csum[lo]


def _transactions(
    rng: np.random.Generator, accounts: pd.DataFrame, start_ns: int, end_ns: int
) -> pd.DataFrame:
    span = end_ns - start_ns
    days = span / _DAY
    rate_per_day = rng.gamma(2.0, 2.0, size=len(accounts))
    counts = rng.poisson(rate_per_day * days)
    account_id = np.repeat(accounts["account_id"].to_numpy(), counts)
    typical = np.repeat(accounts["typical_amount"].to_numpy(), counts)
    n = len(account_id)
    # Whole seconds: card networks stamp to the second, and it keeps parquet files readable.
    ts = start_ns + rng.integers(0, span // 1_000_000_000, size=n) * 1_000_000_000
    amount = typical * rng.lognormal(0.0, 0.6, size=n)
    category = rng.choice(len(CATEGORIES), size=n, p=CATEGORY_WEIGHTS)

    # Bursts: a few transactions spawn 3-6 follow-ups within 30 minutes, larger and skewed to
    # risky merchants (card-testing then cash-out), which the 1h window features can see.
    seeds = np.flatnonzero(rng.random(n) < 0.02)
    sizes = rng.integers(3, 7, size=len(seeds))
    b_idx = np.repeat(seeds, sizes)
    b_ts = ts[b_idx] + rng.integers(1, 30 * 60, size=len(b_idx)) * 1_000_000_000
    b_amount = typical[b_idx] * rng.lognormal(1.2, 0.5, size=len(b_idx))
    risky = [CATEGORIES.index(c) for c in sorted(RISKY_CATEGORIES)]
    b_cat = np.where(
        rng.random(len(b_idx)) < 0.6,
        rng.choice(risky, size=len(b_idx)),
        rng.choice(len(CATEGORIES), size=len(b_idx), p=CATEGORY_WEIGHTS),
    )
    keep = b_ts < end_ns
    df = pd.DataFrame(
        {
            "account_id": np.concatenate([account_id, account_id[b_idx][keep]]).astype(np.int64),
            "ts_ns": np.concatenate([ts, b_ts[keep]]),
            "amount": np.round(np.concatenate([amount, b_amount[keep]]), 2),
            "category": np.concatenate([category, b_cat[keep]]),
        }
    )
    return df.sort_values(["account_id", "ts_ns"], kind="stable").reset_index(drop=True)


def _stats_snapshots(txns: pd.DataFrame, start_ns: int, end_ns: int) -> pd.DataFrame:
    """Hourly snapshots per account active in the last 7 days, plus each txn's live stats."""
    first_hour = (start_ns // _HOUR + 1) * _HOUR
    hours = np.arange(first_hour, end_ns + 1, _HOUR, dtype=np.int64)
    frames: list[pd.DataFrame] = []
    live_count_1h = np.zeros(len(txns), dtype=np.int64)
    live_avg_7d = np.zeros(len(txns))
    for account_id, idx in txns.groupby("account_id", sort=True).indices.items():
        t = txns["ts_ns"].to_numpy()[idx]
        a = txns["amount"].to_numpy()[idx]
        # What the account looked like just before each transaction (label-generation truth).
        c1, _ = _window_stats(t, a, t - 1, _HOUR)
        c7, s7 = _window_stats(t, a, t - 1, _WEEK)
        live_count_1h[idx] = c1
        live_avg_7d[idx] = np.where(c7 > 0, s7 / np.maximum(c7, 1), np.nan)

        c7h, s7h = _window_stats(t, a, hours, _WEEK)
        active = c7h > 0
        if not active.any():
            continue
        at = hours[active]
        c1h, s1h = _window_stats(t, a, at, _HOUR)
        c24, s24 = _window_stats(t, a, at, _DAY)
        frames.append(
            pd.DataFrame(
                {
                    "account_id": account_id,
                    "ts_ns": at,
                    "txn_count_1h": c1h.astype(np.int64),
                    "txn_amount_1h": np.round(s1h, 2),
                    "txn_count_24h": c24.astype(np.int64),
                    "txn_amount_24h": np.round(s24, 2),
                    "txn_count_7d": c7h[active].astype(np.int64),
                    "avg_amount_7d": np.round(s7h[active] / c7h[active], 2),
                }
            )
        )
    txns["live_count_1h"] = live_count_1h
    txns["live_avg_7d"] = live_avg_7d
    return pd.concat(frames, ignore_index=True)


def _utc(ns: np.ndarray | pd.Series) -> pd.Series:
    return pd.Series(pd.to_datetime(np.asarray(ns, dtype=np.int64), unit="ns", utc=True))


def generate(
    out_dir: Path,
    n_accounts: int = 400,
    days: int = 10,
    seed: int = 0,
    end: datetime | None = None,
    fraud_rate: float = 0.08,
) -> dict[str, Path]:
    """Write the fraud label set and raw feature tables as parquet under ``out_dir``.

    Args:
        out_dir: Folder to write into (created if missing); existing files are replaced.
        n_accounts: Number of card accounts.
        days: Length of the simulated period, ending at ``end``.
        seed: Seed of the random generator; the same seed and ``end`` give identical files.
        end: End of the period (tz-aware). Defaults to the current hour, so a demo's
            materialized activity features are still within their 1-day TTL.
        fraud_rate: Target share of fraudulent transactions.

    Returns:
        ``{"transactions": path, "account_profile": path, "account_txn_stats": path}``.

    Raises:
        ValueError: ``end`` is naive, or a size argument is not positive.

    Example:
        >>> paths = generate(Path("/tmp/raw"), n_accounts=20, days=2, seed=1)
        >>> pd.read_parquet(paths["transactions"]).columns.tolist()
        ['account_id', 'event_timestamp', 'amount', 'merchant_category', 'is_fraud']
    """
    if n_accounts < 1 or days < 1:
        raise ValueError(f"n_accounts and days must be >= 1, got {n_accounts} and {days}")
    end = end or _default_end()
    if end.tzinfo is None:
        raise ValueError(f"end must be timezone-aware, got naive {end!r}; pass tzinfo=timezone.utc")
    rng = np.random.default_rng(seed)
    end_ns = pd.Timestamp(end).tz_convert("UTC").value
    start_ns = end_ns - days * _DAY

    ids = np.arange(FIRST_ACCOUNT_ID, FIRST_ACCOUNT_ID + n_accounts, dtype=np.int64)
    accounts = pd.DataFrame(
        {
            "account_id": ids,
            "typical_amount": rng.lognormal(3.5, 0.5, size=n_accounts),
            "opened_ns": start_ns - rng.integers(1, 3650, size=n_accounts) * _DAY,
            "credit_limit": np.round(rng.lognormal(8.3, 0.6, size=n_accounts), -1),
            "home_risk_score": np.round(rng.beta(2.0, 5.0, size=n_accounts), 4),
        }
    )

    txns = _transactions(rng, accounts, start_ns, end_ns)
    stats = _stats_snapshots(txns, start_ns, end_ns)

    # ---- labels: logistic in things the features can see (with an hour's lag)
    acct = accounts.set_index("account_id").loc[txns["account_id"]]
    base = np.where(np.isnan(txns["live_avg_7d"]), acct["typical_amount"], txns["live_avg_7d"])
    logit = (
        1.4 * np.log(txns["amount"].to_numpy() / base)
        + 0.5 * np.minimum(txns["live_count_1h"].to_numpy(), 6)
        + 3.0 * acct["home_risk_score"].to_numpy()
        + 1.3 * np.isin(np.array(CATEGORIES)[txns["category"]], list(RISKY_CATEGORIES))
    )
    bias = _solve_intercept(logit, fraud_rate)
    is_fraud = (rng.random(len(txns)) < _sigmoid(logit + bias)).astype(np.int64)
    labels = pd.DataFrame(
        {
            "account_id": txns["account_id"].astype(np.int64),
            "event_timestamp": _utc(txns["ts_ns"]),
            "amount": txns["amount"].astype(float),
            "merchant_category": np.array(CATEGORIES, dtype=object)[txns["category"]],
            "is_fraud": is_fraud,
        }
    )

    # ---- profile snapshots: initial one before the period, a credit-limit change for ~15 %,
    # and a same-timestamp correction (later created_timestamp) for ~5 %.
    snap_ns = start_ns - rng.integers(1, 30, size=n_accounts) * _DAY
    profile = pd.DataFrame(
        {
            "account_id": ids,
            "ts_ns": snap_ns,
            "created_ns": snap_ns + _HOUR,
            "account_age_days": ((snap_ns - accounts["opened_ns"]) // _DAY).astype(np.int64),
            "credit_limit": accounts["credit_limit"],
            "home_risk_score": accounts["home_risk_score"],
        }
    )
    changed = rng.random(n_accounts) < 0.15
    upd = profile[changed].copy()
    upd["ts_ns"] = start_ns + rng.integers(0, end_ns - start_ns, size=len(upd))
    upd["created_ns"] = upd["ts_ns"] + _HOUR
    upd["account_age_days"] = (
        upd["ts_ns"].to_numpy() - accounts["opened_ns"].to_numpy()[changed]
    ) // _DAY
    upd["credit_limit"] = np.round(upd["credit_limit"] * rng.choice([0.5, 1.5, 2.0], len(upd)), -1)
    corrected = rng.random(n_accounts) < 0.05
    wrong = profile[corrected].copy()
    wrong["created_ns"] = wrong["created_ns"] - 30 * 60 * 1_000_000_000  # superseded write
    wrong["credit_limit"] = wrong["credit_limit"] * 10
    profile = pd.concat([profile, upd, wrong], ignore_index=True)
    profile = profile.sort_values(["account_id", "ts_ns", "created_ns"], kind="stable")
    profile_out = pd.DataFrame(
        {
            "account_id": profile["account_id"].astype(np.int64).to_numpy(),
            "event_timestamp": _utc(profile["ts_ns"]),
            "created_timestamp": _utc(profile["created_ns"]),
            "account_age_days": profile["account_age_days"].astype(np.int64).to_numpy(),
            "credit_limit": profile["credit_limit"].astype(float).to_numpy(),
            "home_risk_score": profile["home_risk_score"].astype(float).to_numpy(),
        }
    )

    stats_out = stats.rename(columns={"ts_ns": "event_timestamp"})
    stats_out["event_timestamp"] = _utc(stats["ts_ns"])
    # Snapshots are written a minute after the hour they describe.
    stats_out.insert(2, "created_timestamp", _utc(stats["ts_ns"] + 60 * 1_000_000_000))
    stats_out["account_id"] = stats_out["account_id"].astype(np.int64)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "transactions": out_dir / "transactions.parquet",
        "account_profile": out_dir / "account_profile.parquet",
        "account_txn_stats": out_dir / "account_txn_stats.parquet",
    }
    labels.to_parquet(paths["transactions"], index=False)
    profile_out.to_parquet(paths["account_profile"], index=False)
    stats_out.to_parquet(paths["account_txn_stats"], index=False)
    return paths


def main(argv: list[str] | None = None) -> None:
    """``python apps/fraud/datagen.py --out DIR [--accounts N --days D --seed S]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="e.g. .mlplat/raw/fraud")
    parser.add_argument("--accounts", type=int, default=400)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name, path in generate(args.out, args.accounts, args.days, args.seed).items():
        print(f"{name}: {path} ({len(pd.read_parquet(path))} rows)")


if __name__ == "__main__":
    main()
