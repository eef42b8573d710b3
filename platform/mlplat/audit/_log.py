"""The hash-chained, append-only audit log of privileged actions.

Every record is the canonical JSON of its fields (``seq, ts, actor, action, target, outcome,
reason, details, prev_hash``) plus the SHA-256 of that JSON; ``prev_hash`` is the previous
record's hash (``"0" * 64`` for the first). Editing, deleting or reordering a record breaks the
chain at that record. Every append also re-signs the head (HMAC with the ``audit_signing_key``
secret) and every N records a signed checkpoint is kept, so cutting records off the tail, or
rewriting records and recomputing their hashes, is caught too by anyone without the key.
The store is chosen by ``profiles.<name>.audit.type`` in platform.yaml.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from multiprocessing import get_context
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mlplat.audit._chain import (
    Chunk,
    canonical_body,
    key_id,
    scan_chunk,
    sign,
)
from mlplat.audit._store import GENESIS_HASH, AuditStore, Batch, Mark, SqliteAuditStore
from mlplat.config import PlatformConfig, PostgresAudit, SqliteAudit
from mlplat.contracts.v1 import AuditEvent
from mlplat.errors import InfraError, UserError

OUTCOMES = ("ok", "denied", "failed")
PRIVILEGED_ACTIONS = ("promote", "override", "rollback", "delete", "quota_change", "auth_failed")
"""Action names the platform uses for its privileged actions (planes may namespace them,
e.g. ``deployment.promotion.step``); anything else is allowed too."""
PARALLEL_MIN_RECORDS = 200_000
"""Below this many records ``verify`` scans in one process (forking costs more than it saves)."""


class AuditVerification(BaseModel):
    """Result of recomputing the whole hash chain and checking its signed marks.

    Example:
        >>> AuditLog(cfg).verify().ok
        True
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    ok: bool = Field(description="True when every record is intact, in sequence and signed.")
    records: int = Field(ge=0, description="Records read from the store.")
    first_bad_seq: int | None = Field(
        default=None, description="Sequence number of the first record that fails (None when ok)."
    )
    problem: str = Field(default="", description="What is wrong with that record, for a person.")
    head_hash: str = Field(default=GENESIS_HASH, description="Hash of the last good record.")
    head_seq: int = Field(default=0, ge=0, description="Seq of the last good record.")
    checkpoints: int = Field(default=0, ge=0, description="Signed checkpoints that matched.")
    base_seq: int = Field(default=0, ge=0, description="Records up to this seq were purged.")


class AuditBatch(BaseModel):
    """What ``append_many`` wrote.

    Example:
        >>> AuditLog(cfg).append_many([{"actor": "a", "action": "promote", "target": "x"}])
        AuditBatch(first_seq=1, last_seq=1, head_hash='…')
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    first_seq: int = Field(ge=0, description="Seq of the first record written (0: none).")
    last_seq: int = Field(ge=0, description="Seq of the last record written.")
    head_hash: str = Field(description="Hash of the last record written.")


_DETAILS_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                                 allow_nan=False).encode


def _bad_text(name: str, value: Any, required: bool) -> UserError:
    if not isinstance(value, str) or (required and not value.strip()):
        return UserError(f"Audit {name} must be a non-empty string, got {value!r}."
                         if required else f"Audit {name} must be a string, got {value!r}.")
    if "\x00" in value:
        return UserError(f"Audit {name} contains a NUL character ({value!r}); remove it.")
    return UserError(f"Audit {name} is not valid Unicode text: {value!r}.")


def _prepare(actor: Any, action: Any, target: Any, reason: Any, details: Any,
             outcome: Any) -> tuple[str, str, str, str, str, str]:
    """Validate one entry; return ``(actor, action, target, outcome, reason, details_json)``.

    This is the bulk path's per-entry cost, so the common case is a handful of C calls;
    invalid UTF-8 (lone surrogates) is caught when the record is hashed.
    """
    for name, value, required in (("actor", actor, True), ("action", action, True),
                                  ("target", target, True), ("reason", reason, False)):
        if type(value) is not str or "\x00" in value or (required and not value.strip()):
            raise _bad_text(name, value, required)
    if outcome not in OUTCOMES:
        raise UserError(f"Audit outcome must be one of {list(OUTCOMES)}, got {outcome!r}.")
    if "override" in action and not reason.strip():
        raise UserError(f"Audit action '{action}' needs a reason (e.g. the incident id): "
                        "overrides are only valid with a why.")
    if not details:
        return actor, action, target, outcome, reason, "{}"
    if not isinstance(details, dict):
        if not isinstance(details, Mapping):
            raise UserError(f"Audit details must be a dict, got {type(details).__name__}.")
        details = dict(details)
    try:
        details_json = _DETAILS_JSON(details)
    except (TypeError, ValueError) as exc:
        raise UserError(
            f"Audit details must be plain JSON (str, number, bool, null, list, dict; no NaN): "
            f"{exc}. Convert values with str() before appending."
        ) from exc
    if "\\u0000" in details_json:
        raise UserError("Audit details contain a NUL character; remove it.")
    return actor, action, target, outcome, reason, details_json


def _event(body: str, digest: str) -> AuditEvent:
    r = json.loads(body)
    return AuditEvent(seq=r["seq"], ts=datetime.fromisoformat(r["ts"]), actor=r["actor"],
                      action=r["action"], target=r["target"], outcome=r["outcome"],
                      reason=r["reason"], details=r["details"], prev_hash=r["prev_hash"],
                      hash=digest)


def _open_store(cfg: PlatformConfig) -> AuditStore:
    backend = cfg.active_profile().audit
    days = cfg.slos.governance.audit_retention_days
    if isinstance(backend, SqliteAudit):
        return SqliteAuditStore(cfg.local_path(backend.path), retention_days=days)
    if isinstance(backend, PostgresAudit):
        from mlplat.audit._pg import PostgresAuditStore

        return PostgresAuditStore(backend.dsn, backend.password_env, retention_days=days)
    raise UserError(f"Unsupported audit store type: {backend!r}.")  # pragma: no cover


def _scan_range(store: AuditStore, lo: int, hi: int, checkpoints: dict[int, str]) -> Chunk:
    return scan_chunk(store.scan(lo, hi), checkpoints)


class AuditLog:
    """Append-only, tamper-evident log of privileged actions (promote, override, rollback …).

    Who / what / when / why / outcome: ``actor``, ``action`` + ``target``, ``ts``, ``reason``,
    ``outcome`` (``ok``, ``denied``, ``failed``), plus JSON ``details``. There is no update
    method; the only deletion is ``purge`` of records older than the retention period.

    Args:
        cfg: Platform config; the active profile's ``audit`` picks the store and
            ``checkpoint_every``; ``slos.governance.audit_retention_days`` the retention.
        clock: Seconds since the epoch, injectable for tests.
        store: Use this store instead of the one the profile names (tests, tooling).
        signing_key: HMAC key for the head and checkpoints; default: the
            ``audit_signing_key`` secret (mlplat.secrets).
        checkpoint_every: Override the profile's checkpoint interval (records).

    Raises:
        InfraError: the store cannot be opened or the signing key is not available.

    Example:
        >>> log = AuditLog(cfg)
        >>> ev = log.append("alice", "promote", "fraud/3", reason="canary green")
        >>> log.verify().ok
        True
    """

    def __init__(
        self,
        cfg: PlatformConfig,
        clock: Callable[[], float] | None = None,
        store: AuditStore | None = None,
        signing_key: bytes | None = None,
        checkpoint_every: int | None = None,
    ) -> None:
        self._clock = clock or time.time
        if signing_key is None:
            from mlplat.secrets import get_secret

            signing_key = get_secret(cfg, "audit_signing_key").encode("utf-8")
        self._key = signing_key
        self._key_id = key_id(signing_key)
        self._store = store if store is not None else _open_store(cfg)
        self.retention_days = cfg.slos.governance.audit_retention_days
        self._checkpoint_every = checkpoint_every or cfg.active_profile().audit.checkpoint_every
        if getattr(self._store, "migrated_v0", False):
            self._adopt_legacy()

    def _adopt_legacy(self) -> None:
        """Sign the head of a log converted from the first (unsigned) release, if it is intact.

        A broken legacy chain is left unsigned, so ``verify`` keeps reporting it.
        """
        chunks = self._scan(self._store.id_bounds(), {}, 1)
        if chunks and chunks[0].bad_offset is None and chunks[0].first_seq == 1 \
                and chunks[0].first_prev == GENESIS_HASH:
            c = chunks[0]
            self._store.put_mark(self._mark("head", c.last_seq, c.last_hash, self._now()))
            self._store.put_mark(self._mark("checkpoint", c.last_seq, c.last_hash, self._now()))

    # ------------------------------------------------------------------ writing

    def _now(self) -> str:
        return datetime.fromtimestamp(self._clock(), tz=UTC).isoformat(timespec="microseconds")

    def _mark(self, kind: str, seq: int, digest: str, signed_at: str) -> Mark:
        return Mark(kind, seq, digest, signed_at, self._key_id,
                    sign(self._key, kind, seq, digest, signed_at))

    def _write(self, entries: list[tuple[str, str, str, str, str, str]]) -> Batch:
        every = self._checkpoint_every

        def build(last_seq: int, last_hash: str) -> Batch:
            import hashlib

            ts = self._now()
            rows: list[tuple[str, str]] = []
            marks: list[Mark] = []
            seq, prev = last_seq, last_hash
            sha = hashlib.sha256
            for actor, action, target, outcome, reason, details_json in entries:
                seq += 1
                body = canonical_body(seq, ts, actor, action, target, outcome, reason,
                                      details_json, prev)
                try:
                    prev = sha(body.encode("utf-8")).hexdigest()
                except UnicodeEncodeError as exc:
                    raise UserError(f"Audit entry for '{target}' is not valid Unicode text "
                                    f"({exc}); nothing was written.") from exc
                rows.append((body, prev))
                if seq % every == 0:
                    marks.append(self._mark("checkpoint", seq, prev, ts))
            marks.append(self._mark("head", seq, prev, ts))
            return Batch(rows, marks, last_seq + 1, seq, prev)

        return self._store.append(build)

    def append(
        self,
        actor: str,
        action: str,
        target: str,
        reason: str = "",
        details: dict[str, Any] | None = None,
        outcome: str = "ok",
    ) -> AuditEvent:
        """Append one record, chained to the current head and durable on return.

        Args:
            actor: Who acted (a person or a service identity).
            action: What they did, e.g. ``promote``, ``rollback``, ``override``,
                ``delete``, ``quota_change``, ``auth_failed`` (see ``PRIVILEGED_ACTIONS``).
            target: What it was done to, e.g. ``fraud/3``.
            reason: Why, in words (required for overrides).
            details: Extra JSON-serialisable facts (weights, gate results …).
            outcome: ``ok``, ``denied`` or ``failed``.

        Returns:
            The stored ``AuditEvent`` with its ``seq`` and ``hash``.

        Raises:
            UserError: an empty actor/action/target, an unknown outcome, an override without
                a reason, or details that are not JSON (NaN, sets, objects).
            InfraError: the store refused the write; the action was not recorded.

        Example:
            >>> AuditLog(cfg).append("ic-oncall", "override", "fraud/3",
            ...                      reason="INC-42", details={"skipped": "shadow"}).seq
            1
        """
        entry = _prepare(actor, action, target, reason, details, outcome)
        batch = self._write([entry])
        return _event(*batch.rows[0])

    def append_many(self, entries: Iterable[Mapping[str, Any]]) -> AuditBatch:
        """Append many records in one transaction (one fsync): the bulk path.

        Each entry is a mapping with ``actor``, ``action``, ``target`` and optionally
        ``reason``, ``details``, ``outcome``. Either all are written or none.

        Raises:
            UserError: any entry is invalid (nothing is written; the message names its index).
            InfraError: the store refused the write.

        Example:
            >>> AuditLog(cfg).append_many([{"actor": "quota-bot", "action": "quota_change",
            ...                             "target": "team/risk", "details": {"cpu": 64}}])
            AuditBatch(first_seq=1, last_seq=1, head_hash='…')
        """
        prepared = []
        for i, e in enumerate(entries):
            try:
                prepared.append(_prepare(e.get("actor"), e.get("action"), e.get("target"),
                                         e.get("reason", ""), e.get("details"),
                                         e.get("outcome", "ok")))
            except UserError as exc:
                raise UserError(f"entry {i}: {exc}") from exc
            except AttributeError as exc:
                raise UserError(f"entry {i} must be a mapping, got {type(e).__name__}.") from exc
        if not prepared:
            last = self._store.last()
            return AuditBatch(first_seq=0, last_seq=last[0] if last else 0,
                              head_hash=last[1] if last else GENESIS_HASH)
        batch = self._write(prepared)
        return AuditBatch(first_seq=batch.first_seq, last_seq=batch.last_seq,
                          head_hash=batch.head_hash)

    def checkpoint(self) -> tuple[int, str]:
        """Sign a checkpoint of the current head now; returns its ``(seq, hash)``.

        Publish the result (a ticket, a signed message) for a proof that does not depend on
        the key staying secret.

        Example:
            >>> AuditLog(cfg).checkpoint()
            (2, '5f1c…')
        """
        last = self._store.last()
        if last is None:
            return (0, GENESIS_HASH)
        self._store.put_mark(self._mark("checkpoint", last[0], last[1], self._now()))
        return last

    def purge(self, before: datetime, *, actor: str, reason: str) -> int:
        """Delete records older than ``before``, which must be past the retention period.

        The chain stays verifiable: a signed ``base`` mark records where it now starts. The
        purge (or its refusal) is itself audited.

        Args:
            before: Records with ``ts < before`` are deleted (timezone-aware).
            actor: Who purges.
            reason: Why (e.g. the retention ticket).

        Returns:
            How many records were deleted.

        Raises:
            UserError: ``before`` is later than now minus ``audit_retention_days``
                (nothing is deleted; the refusal is audited), or naive.

        Example:
            >>> AuditLog(cfg).purge(datetime(2019, 1, 1, tzinfo=UTC), actor="dpo",
            ...                     reason="retention RET-7")
            0
        """
        if before.tzinfo is None:
            raise UserError(f"purge(before={before!r}) needs a timezone-aware datetime, "
                            "e.g. datetime(2019, 1, 1, tzinfo=UTC).")
        now = datetime.fromtimestamp(self._clock(), tz=UTC)
        oldest_allowed = now - timedelta(days=self.retention_days)
        details: dict[str, Any] = {"before": before.isoformat(),
                                   "retention_days": self.retention_days}
        if before > oldest_allowed:
            self.append(actor, "audit.purge", "audit_log", reason=reason, outcome="denied",
                        details=details)
            raise UserError(
                f"Refusing to purge audit records before {before.isoformat()}: the retention "
                f"period is {self.retention_days} days (slos.governance.audit_retention_days), "
                f"so only records before {oldest_allowed.isoformat()} may be deleted."
            )
        cutoff = before.astimezone(UTC).isoformat(timespec="microseconds")
        first_kept = self._store.first_seq_at_or_after(cutoff)
        last = self._store.last()
        through = (first_kept - 1) if first_kept is not None else (last[0] if last else 0)
        deleted = 0
        if last is not None and through >= 1:
            through_hash = self._hash_of(through)
            if through_hash is not None:
                deleted = self._store.purge(
                    through, self._mark("base", through, through_hash, self._now()))
        details.update({"through_seq": through, "deleted": deleted})
        self.append(actor, "audit.purge", "audit_log", reason=reason, details=details)
        return deleted

    def _hash_of(self, seq: int) -> str | None:
        for _body, digest in self._store.select(since_seq=seq - 1, limit=1):
            return digest
        return None

    # ------------------------------------------------------------------ reading

    def events(self, since_seq: int = 0, *, target: str | None = None,
               action_prefix: str | None = None) -> list[AuditEvent]:
        """Records with ``seq > since_seq`` in order (run ``verify`` to trust them).

        Args:
            since_seq: Only records after this seq.
            target: Only records about this target (indexed).
            action_prefix: Only actions starting with this, e.g. ``deployment.``.

        Example:
            >>> [e.action for e in AuditLog(cfg).events()]
            ['promote', 'rollback']
        """
        return [_event(b, h) for b, h in self._store.select(since_seq, target, action_prefix)]

    def head(self) -> tuple[int, str]:
        """``(seq, hash)`` of the last record (``(0, GENESIS_HASH)`` when empty).

        Example:
            >>> AuditLog(cfg).head()[0]
            2
        """
        last = self._store.last()
        return last if last is not None else (0, GENESIS_HASH)

    def _valid(self, m: Mark) -> bool:
        return m.key_id == self._key_id and m.signature == sign(
            self._key, m.kind, m.seq, m.hash, m.signed_at)

    def _mark_problem(self, m: Mark) -> str:
        if m.key_id != self._key_id:
            return (f"its {m.kind} mark was signed with key {m.key_id}, not the current audit "
                    f"signing key {self._key_id} (the key changed, or the mark was forged)")
        return f"its {m.kind} mark has an invalid signature: it was forged or edited"

    def verify(self, expected_head: tuple[int, str] | None = None,
               workers: int | None = None) -> AuditVerification:
        """Recompute every hash and link and check the signed marks; name the first bad record.

        Catches an edited, deleted, inserted or reordered record (by the chain), records cut
        off the tail or rewritten with recomputed hashes (by the signed head and checkpoints).

        Args:
            expected_head: A ``(seq, hash)`` from ``head()`` published earlier; the log must
                still contain that record (a proof that does not rely on the key).
            workers: Processes for large logs (default: CPUs, capped at 4; 1 = in-process).

        Returns:
            ``AuditVerification`` with ``ok`` and, when broken, ``first_bad_seq`` and ``problem``.

        Example:
            >>> v = AuditLog(cfg).verify()
            >>> (v.ok, v.records, v.first_bad_seq)
            (True, 2, None)
        """
        marks = self._store.marks()
        bounds = self._store.id_bounds()
        total = bounds[2] if bounds else 0
        base = next((m for m in marks if m.kind == "base"), None)
        head = next((m for m in marks if m.kind == "head"), None)
        base_seq, base_hash = (base.seq, base.hash) if base else (0, GENESIS_HASH)

        def bad(seq: int, problem: str, good_seq: int, good_hash: str,
                matched: int = 0) -> AuditVerification:
            return AuditVerification(ok=False, records=total, first_bad_seq=seq, problem=problem,
                                     head_hash=good_hash, head_seq=good_seq, checkpoints=matched,
                                     base_seq=base_seq)

        if base is not None and not self._valid(base):
            return bad(base.seq + 1, f"the chain starts after a purge at seq {base.seq}, but "
                       + self._mark_problem(base), 0, GENESIS_HASH)
        checkpoints: dict[int, str] = {}
        for m in marks:
            if m.kind == "checkpoint" and m.seq > base_seq:
                if not self._valid(m):
                    return bad(m.seq, f"record {m.seq}: " + self._mark_problem(m),
                               base_seq, base_hash)
                checkpoints[m.seq] = m.hash

        chunks = self._scan(bounds, checkpoints, workers)
        prev_seq, prev_hash, matched = base_seq, base_hash, 0
        for c in chunks:
            if c.count == 0 and c.bad_offset is None:
                continue  # an empty id range
            expected = prev_seq + 1
            if c.bad_offset == 0:  # the range's first record fails on its own
                return bad(expected, c.problem.replace("{expected}", str(expected)),
                           prev_seq, prev_hash, matched)
            if c.first_seq != expected:
                problem = (f"expected seq {expected} at this position, found seq "
                           f"{c.first_seq}: record {expected} was deleted or moved, or a seq "
                           "was edited")
                if base is not None and prev_seq == base_seq:
                    problem += f" (the log was purged through seq {base_seq})"
                return bad(expected, problem, prev_seq, prev_hash, matched)
            if c.first_prev != prev_hash:
                return bad(expected, f"prev_hash {c.first_prev[:12]}… does not match the "
                           f"previous record's hash {prev_hash[:12]}…: a record before it was "
                           "removed, reordered or edited", prev_seq, prev_hash, matched)
            matched += c.checkpoints_matched
            if c.bad_offset is not None:
                expected = c.first_seq + c.bad_offset
                return bad(expected, c.problem.replace("{expected}", str(expected)),
                           c.last_seq, c.last_hash, matched)
            prev_seq, prev_hash = c.last_seq, c.last_hash

        last_cp = max([s for s in checkpoints if s <= prev_seq] or [base_seq])
        beyond = sorted(s for s in checkpoints if s > prev_seq)
        if beyond:
            return bad(prev_seq + 1, f"the log ends at seq {prev_seq} but a signed checkpoint "
                       f"vouches for record {beyond[-1]}: records {prev_seq + 1}..{beyond[-1]} "
                       "were removed", prev_seq, prev_hash, matched)
        if head is None:
            if prev_seq > base_seq:
                return bad(last_cp + 1, "the signed head is missing: records after seq "
                           f"{last_cp} cannot be vouched for (the head mark was deleted, or "
                           "records were written without mlplat)", prev_seq, prev_hash, matched)
        elif not self._valid(head):
            return bad(last_cp + 1, f"record {head.seq}: " + self._mark_problem(head),
                       prev_seq, prev_hash, matched)
        elif head.seq > prev_seq:
            return bad(prev_seq + 1, f"the log ends at seq {prev_seq} but the signed head is "
                       f"record {head.seq}: records {prev_seq + 1}..{head.seq} were removed "
                       "from the tail", prev_seq, prev_hash, matched)
        elif head.seq < prev_seq:
            return bad(head.seq + 1, f"records {head.seq + 1}..{prev_seq} come after the signed "
                       f"head (seq {head.seq}): they were added without mlplat", prev_seq,
                       prev_hash, matched)
        elif head.hash != prev_hash:
            return bad(last_cp + 1, f"the signed head says record {head.seq} has hash "
                       f"{head.hash[:12]}… but it has {prev_hash[:12]}…: records after "
                       f"checkpoint {last_cp} were rewritten", prev_seq, prev_hash, matched)

        if expected_head is not None:
            seq, digest = expected_head
            if seq > prev_seq:
                return bad(prev_seq + 1, f"the log ends at seq {prev_seq} but record {seq} was "
                           f"published; records {prev_seq + 1}..{seq} were removed",
                           prev_seq, prev_hash, matched)
            if seq > base_seq:
                actual = self._hash_of(seq)
                if actual != digest:
                    return bad(seq, f"record {seq} has hash {str(actual)[:12]}… but "
                               f"{digest[:12]}… was published for it; the log was rewritten",
                               prev_seq, prev_hash, matched)
        return AuditVerification(ok=True, records=total, head_hash=prev_hash, head_seq=prev_seq,
                                 checkpoints=matched, base_seq=base_seq)

    def _scan(self, bounds: tuple[int, int, int] | None, checkpoints: dict[int, str],
              workers: int | None) -> list[Chunk]:
        if bounds is None:
            return []
        lo, hi, count = bounds
        n = workers if workers is not None else min(4, os.cpu_count() or 1)
        if n <= 1 or count < PARALLEL_MIN_RECORDS or not self._store.fork_safe():
            return [_scan_range(self._store, lo, hi, checkpoints)]
        step = (hi - lo) // n + 1
        ranges = [(lo + i * step, min(hi, lo + (i + 1) * step - 1)) for i in range(n)]
        try:
            # fork: workers inherit the store object and start in milliseconds.
            with ProcessPoolExecutor(n, mp_context=get_context("fork")) as pool:
                futures = [pool.submit(_scan_range, self._store, a, b, checkpoints)
                           for a, b in ranges]
                return [f.result() for f in futures]
        except (OSError, RuntimeError) as exc:
            if isinstance(exc, InfraError):
                raise
            return [_scan_range(self._store, lo, hi, checkpoints)]
