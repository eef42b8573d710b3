"""Model cards stored in the registry itself, as content-addressed, append-only revisions.

A card lives in its model version's tags, not in an artifact folder that a storage lifecycle
rule or a careless ``rm`` can remove:

* ``mlplat.card.r<N>`` — canonical JSON of revision N (split into ``mlplat.card.r<N>.<i>``
  chunks plus ``mlplat.card.r<N>.chunks`` when longer than ``CHUNK_CHARS``);
* ``mlplat.card.r<N>.sha256`` — its SHA-256;
* ``mlplat.card.revision`` — the newest revision number;
* ``card_sha256`` — the newest revision's hash, written **last** (the "complete" marker).

Revision N > 1 names revision N-1's hash in ``previous_sha256``, so the revisions form a hash
chain; every read re-hashes every revision it returns and raises ``CardIntegrityError`` on any
mismatch. An edit never rewrites a revision, it appends one.
"""

from __future__ import annotations

from typing import Any

from mlplat.contracts.v1 import ModelCard
from mlplat.errors import MlplatError, NotFoundError
from mlplat.experiment._cards import canonical_card_json, card_sha256

CARD_SHA_TAG = "card_sha256"
REVISION_TAG = "mlplat.card.revision"
CHUNK_CHARS = 50_000
"""MLflow caps a registry tag value at 100,000 characters; chunks stay well below."""


class CardIntegrityError(MlplatError):
    """A version's model card does not match the hash recorded when it was registered."""

    http_status = 500


def _rev_key(revision: int) -> str:
    return f"mlplat.card.r{revision}"


def card_tags(card: ModelCard) -> dict[str, str]:
    """The tags holding one revision (without the head markers).

    Example:
        >>> sorted(card_tags(card))
        ['mlplat.card.r1', 'mlplat.card.r1.sha256']
    """
    text = canonical_card_json(card)
    key = _rev_key(card.revision)
    tags = {f"{key}.sha256": card_sha256(card)}
    if len(text) <= CHUNK_CHARS:
        tags[key] = text
    else:
        chunks = [text[i : i + CHUNK_CHARS] for i in range(0, len(text), CHUNK_CHARS)]
        tags[f"{key}.chunks"] = str(len(chunks))
        tags.update({f"{key}.{i}": chunk for i, chunk in enumerate(chunks)})
    return tags


def write_card(c: Any, model: str, version: str, card: ModelCard) -> str:
    """Store ``card`` as the newest revision of ``model`` v``version``; returns its hash.

    The head markers are written after the revision's own tags, ``card_sha256`` last: a crash
    in between leaves the previous revision as the head, never a half-written one.
    """
    for key, value in card_tags(card).items():
        c.set_model_version_tag(model, version, key, value)
    sha = card_sha256(card)
    c.set_model_version_tag(model, version, REVISION_TAG, str(card.revision))
    c.set_model_version_tag(model, version, CARD_SHA_TAG, sha)
    return sha


def has_registry_card(tags: dict[str, str]) -> bool:
    """True when the version's card lives in its tags (registered by this release or later)."""
    return REVISION_TAG in tags


def _revision_text(tags: dict[str, str], name: str, revision: int) -> str:
    key = _rev_key(revision)
    if key in tags:
        return tags[key]
    n = tags.get(f"{key}.chunks")
    if n is None:
        raise CardIntegrityError(
            f"Model card revision {revision} of {name} is missing from the registry: its tags "
            "were removed. Treat the version as untrusted."
        )
    try:
        return "".join(tags[f"{key}.{i}"] for i in range(int(n)))
    except (KeyError, ValueError) as exc:
        raise CardIntegrityError(
            f"Model card revision {revision} of {name} has a missing chunk ({exc}): its tags "
            "were modified. Treat the version as untrusted."
        ) from exc


def read_revisions(model: str, version: str, tags: dict[str, str]) -> list[ModelCard]:
    """Every card revision of a version, oldest first, each verified against the chain.

    Raises:
        NotFoundError: the version has no card (registration did not finish).
        CardIntegrityError: any revision's content, hash or link does not match.
    """
    name = f"{model} v{version}"
    head_sha = tags.get(CARD_SHA_TAG)
    if head_sha is None or REVISION_TAG not in tags:
        raise NotFoundError(
            f"{name} has no model card (its registration did not finish). "
            "Register a new version by re-running training."
        )
    try:
        head = int(tags[REVISION_TAG])
    except ValueError as exc:
        raise CardIntegrityError(f"{name}: {REVISION_TAG}={tags[REVISION_TAG]!r}.") from exc
    cards: list[ModelCard] = []
    previous = ""
    for rev in range(1, head + 1):
        text = _revision_text(tags, name, rev)
        try:
            card = ModelCard.model_validate_json(text)
        except ValueError as exc:
            raise CardIntegrityError(
                f"Model card revision {rev} of {name} is not a valid card ({exc}): it was "
                "modified after registration."
            ) from exc
        sha = card_sha256(card)
        problems = []
        if sha != tags.get(f"{_rev_key(rev)}.sha256"):
            problems.append("its content does not match its recorded hash")
        if card.revision != rev or card.previous_sha256 != previous:
            problems.append("it is not linked to the previous revision")
        if (card.model, card.version) != (model, str(version)):
            problems.append(f"it names {card.model} v{card.version}")
        if problems:
            raise CardIntegrityError(
                f"Model card revision {rev} of {name} was tampered with: {'; '.join(problems)}. "
                "Treat the version as untrusted; re-register it from its run."
            )
        cards.append(card)
        previous = sha
    if previous != head_sha:
        raise CardIntegrityError(
            f"Model card of {name} does not match its registered hash ({head_sha[:12]}…): the "
            "registry was modified after registration. Treat the version as untrusted."
        )
    return cards
