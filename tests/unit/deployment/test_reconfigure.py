"""Waiting for a traffic change to be in force, and giving up the wait when a later one won."""

from __future__ import annotations

import time

import pytest

from mlplat.contracts.v1 import TrafficSplit
from mlplat.deployment import RouterUserConfig, wait_for_user_config
from mlplat.errors import ConflictError, InfraError


def _config(weights: dict[str, float], issued_at: float | None) -> RouterUserConfig:
    return RouterUserConfig(model="fraud", split=TrafficSplit(weights=weights),
                            issued_at=issued_at)


def _replica(*states: RouterUserConfig | None):
    """One replica's answers, in order; the last one repeats."""
    answers = [s.model_dump(mode="json") if s else None for s in states]

    def read(timeout_s: float) -> dict | None:
        assert timeout_s > 0
        return answers.pop(0) if len(answers) > 1 else answers[0]
    return read


def test_returns_once_the_whole_config_is_in_force() -> None:
    older = _config({"1": 100}, 1.0)
    ours = _config({"1": 50, "2": 50}, 2.0)
    same_split_other_faults = ours.model_copy(update={"stable": "1"})
    read = _replica(None, older, same_split_other_faults, ours)
    wait_for_user_config("fraud", read, ours, time.monotonic() + 5, poll_s=0)
    assert read(1.0) == ours.model_dump(mode="json")  # it stopped at ours, not before


def test_a_replica_still_on_an_earlier_change_is_waited_for() -> None:
    """Serve reconfigures replicas one by one: an older config is not a reason to stop."""
    ours = _config({"1": 0, "2": 100}, 20.0)
    read = _replica(_config({"1": 100}, 5.0), _config({"1": 50, "2": 50}, 10.0), ours)
    wait_for_user_config("fraud", read, ours, time.monotonic() + 5, poll_s=0)
    assert read(1.0) == ours.model_dump(mode="json")


def test_a_later_change_ends_the_wait_with_a_conflict_naming_the_winner() -> None:
    """The guard's rollback overtaken by a person's split must not hold the guard's thread
    until the rollback deadline (it did: 120 s)."""
    ours = _config({"1": 100, "2": 0}, 10.0)
    theirs = _config({"1": 75, "2": 25}, 11.0)
    started = time.monotonic()
    with pytest.raises(ConflictError, match=r"overtaken .* now runs .*'2': 25") as err:
        wait_for_user_config("fraud", _replica(theirs), ours, started + 30, poll_s=0.01)
    assert err.value.http_status == 409
    assert time.monotonic() - started < 1.0


def test_times_out_naming_the_app_and_split() -> None:
    ours = _config({"1": 100}, 10.0)
    with pytest.raises(InfraError, match=r"app 'fraud' did not adopt traffic .*'1': 100"):
        wait_for_user_config("fraud", _replica(_config({"2": 100}, 5.0)), ours,
                             time.monotonic() + 0.2, poll_s=0.01)


def test_configs_without_issued_at_never_count_as_later() -> None:
    """A Serve config file's user_config (``serve deploy``) carries no issued_at: waited for,
    never mistaken for a newer change."""
    ours = _config({"1": 100}, 10.0)
    with pytest.raises(InfraError):
        wait_for_user_config("fraud", _replica(_config({"2": 100}, None)), ours,
                             time.monotonic() + 0.2, poll_s=0.01)
