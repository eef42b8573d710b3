"""Secrets by name: admin token, webhook HMAC secret, audit signing key.

platform.yaml's ``security`` section names the environment variable holding each secret; the
value never lives in the repo. In the ``local`` profile a secret that is not set is generated
once into ``<root>/secrets/<name>`` (mode 0600) so a laptop works out of the box; in any other
profile a missing secret is an error naming the variable to set.

    >>> from mlplat.secrets import get_secret
    >>> token = get_secret(cfg, "admin_token")
"""

from __future__ import annotations

import hmac
import os
import secrets as _secrets
from typing import Literal

from mlplat.config import PlatformConfig
from mlplat.errors import InfraError

SecretName = Literal["admin_token", "webhook_secret", "audit_signing_key"]

_ENV_FIELD: dict[str, str] = {
    "admin_token": "admin_token_env",
    "webhook_secret": "webhook_secret_env",
    "audit_signing_key": "audit_signing_key_env",
}


def secret_env_var(cfg: PlatformConfig, name: SecretName) -> str:
    """The environment variable platform.yaml names for secret ``name``."""
    return str(getattr(cfg.security, _ENV_FIELD[name]))


def get_secret(cfg: PlatformConfig, name: SecretName) -> str:
    """The secret's value: from its environment variable, else (local profile only) a generated file."""
    env_var = secret_env_var(cfg, name)
    value = os.environ.get(env_var)
    if value:
        return value
    if cfg.active_profile_name() != "local" or "://" in cfg.root():
        raise InfraError(
            f"Secret '{name}' is not set: export {env_var} (platform.yaml security.{_ENV_FIELD[name]}). "
            f"Profile '{cfg.active_profile_name()}' never generates secrets."
        )
    path = cfg.local_path(f"secrets/{name}")
    if not path.exists():
        # Write a private temp file, then link it into place: link fails if another process
        # won the race, and nobody ever reads a half-written secret.
        tmp = path.with_name(f".{name}.{os.getpid()}.{_secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(_secrets.token_urlsafe(32))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()


def check_bearer(cfg: PlatformConfig, authorization: str | None) -> bool:
    """True when an ``Authorization: Bearer <token>`` header carries the admin token."""
    if not authorization or not authorization.startswith("Bearer "):
        return False
    return hmac.compare_digest(authorization[len("Bearer "):].strip(), get_secret(cfg, "admin_token"))
