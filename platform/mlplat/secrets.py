"""Secrets by name (webhook HMAC secret, audit signing key) and who a token belongs to.

platform.yaml's ``security`` section names the environment variable holding each secret; the
value never lives in the repo. In the ``local`` profile a secret that is not set is generated
once into ``<root>/secrets/<name>`` (mode 0600) so a laptop works out of the box; in any other
profile a missing secret is an error naming the variable to set.

Identity comes from credentials: each person in ``security.people`` has their own token, and
``identify`` / ``bearer_identity`` turn a token into an ``Identity`` (name + roles) or raise.

    >>> from mlplat.secrets import get_secret, identify, person_token
    >>> key = get_secret(cfg, "webhook_secret")
    >>> identify(cfg, person_token(cfg, "carol")).name
    'carol'
"""

from __future__ import annotations

import hmac
import os
import secrets as _secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mlplat.config import PlatformConfig, Role
from mlplat.errors import AuthenticationError, InfraError, PermissionDeniedError

SecretName = Literal["webhook_secret", "audit_signing_key"]

_ENV_FIELD: dict[str, str] = {
    "webhook_secret": "webhook_secret_env",
    "audit_signing_key": "audit_signing_key_env",
}


def secret_env_var(cfg: PlatformConfig, name: SecretName) -> str:
    """The environment variable platform.yaml names for secret ``name``."""
    return str(getattr(cfg.security, _ENV_FIELD[name]))


def get_secret(cfg: PlatformConfig, name: SecretName) -> str:
    """The secret's value: from its environment variable, else (local profile only) a generated file."""
    return _env_or_local(cfg, secret_env_var(cfg, name), name,
                         f"platform.yaml security.{_ENV_FIELD[name]}")


def _env_or_local(cfg: PlatformConfig, env_var: str, file_name: str, where: str) -> str:
    value = os.environ.get(env_var)
    if value:
        return value
    if cfg.active_profile_name() != "local" or "://" in cfg.root():
        raise InfraError(
            f"Secret '{file_name}' is not set: export {env_var} ({where}). "
            f"Profile '{cfg.active_profile_name()}' never generates secrets."
        )
    path = cfg.local_path(f"secrets/{file_name}")
    if not path.exists():
        _generate(path)
    return path.read_text().strip()


def _generate(path: Path) -> None:
    # Write a private temp file, then link it into place: link fails if another process won
    # the race, and nobody ever reads a half-written secret.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{_secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(_secrets.token_urlsafe(32))
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()


# --------------------------------------------------------------------------- identity


@dataclass(frozen=True)
class Identity:
    """Who a token belongs to (a ``security.people`` entry) and what they may do.

    Example:
        >>> Identity("carol", frozenset({"deployer", "incident-commander"})).may("deployer")
        True
    """

    name: str
    roles: frozenset[str]

    def may(self, role: Role) -> bool:
        """True when this person holds ``role`` (a platform admin holds every role)."""
        return role in self.roles or "platform-admin" in self.roles

    def require(self, role: Role, action: str) -> None:
        """Raise ``PermissionDeniedError`` (403) naming the missing role unless ``may(role)``."""
        if not self.may(role):
            raise PermissionDeniedError(
                f"{self.name} may not {action}: it needs the '{role}' role, and {self.name} "
                f"has {sorted(self.roles)} (platform.yaml security.people.{self.name}.roles).")


def token_file(cfg: PlatformConfig, person: str) -> Path:
    """Where the local profile keeps ``person``'s generated token (``<root>/secrets/token-<name>``)."""
    return cfg.local_path(f"secrets/token-{person}")


def person_token(cfg: PlatformConfig, person: str) -> str:
    """``person``'s token: their environment variable, else (local profile) the generated file.

    Used by the platform to check tokens, and locally to hand a person their own token
    (``export MLPLAT_TOKEN=$(cat .mlplat/secrets/token-alice)``).
    """
    entry = cfg.security.people.get(person)
    if entry is None:
        raise AuthenticationError(f"'{person}' is not in platform.yaml security.people "
                                  f"(known: {sorted(cfg.security.people)}).")
    return _env_or_local(cfg, entry.token_env, f"token-{person}",
                         f"platform.yaml security.people.{person}.token_env")


def identify(cfg: PlatformConfig, token: str | None) -> Identity:
    """The person ``token`` belongs to.

    Raises:
        AuthenticationError: no token, or nobody's (401).
    """
    if not token:
        raise AuthenticationError(
            f"no token: privileged actions need your own token (export {cfg.security.token_env}"
            "=<your token>; locally: export "
            f"{cfg.security.token_env}=$(cat {token_file(cfg, '<you>')})).")
    found = None
    for name in cfg.security.people:
        # Compare against everyone (constant time each) so timing does not say who matched.
        if hmac.compare_digest(token.strip().encode(), person_token(cfg, name).encode()):
            found = name
    if found is None:
        raise AuthenticationError("the token belongs to nobody in platform.yaml security.people.")
    return Identity(found, frozenset(cfg.security.people[found].roles))


def bearer_identity(cfg: PlatformConfig, authorization: str | None) -> Identity:
    """The person behind an ``Authorization: Bearer <token>`` header (raises like ``identify``)."""
    if not authorization or not authorization.startswith("Bearer "):
        raise AuthenticationError("this route needs 'Authorization: Bearer <your token>' "
                                  "(one token per person, platform.yaml security.people).")
    return identify(cfg, authorization[len("Bearer "):])


def caller_token(cfg: PlatformConfig) -> str:
    """The CLI caller's own token, from ``security.token_env`` (raises ``AuthenticationError``)."""
    token = os.environ.get(cfg.security.token_env, "").strip()
    if not token:
        identify(cfg, None)  # raises with the how-to
    return token
