"""Paths and URIs through pyarrow filesystems, so ``s3://`` roots work like local folders.

Credentials and the endpoint of an S3-compatible store come from the standard AWS variables
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, and
``AWS_ENDPOINT_URL`` for MinIO/moto/Ceph), which pyarrow's S3 filesystem reads. A Ray job
gets them on every worker through its ``runtime_env`` ``env_vars``.

Example:
    >>> fs, path = resolve("s3://bucket/datasets/fraud")
    >>> write_text(fs, f"{path}/manifest.json", "{}")
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.fs as pafs

from mlplat.errors import UserError


def is_local(uri: str) -> bool:
    """True for plain paths and ``file://`` URIs."""
    return "://" not in uri or uri.startswith("file://")


def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem holding ``uri`` and the path on it (local paths made absolute).

    Raises:
        UserError: the URI scheme has no pyarrow filesystem (e.g. a typo like ``s4://``).
    """
    if is_local(uri):
        local = uri[len("file://") :] if uri.startswith("file://") else uri
        return pafs.LocalFileSystem(), str(Path(local).resolve())
    try:
        return pafs.FileSystem.from_uri(uri)
    except (ValueError, OSError) as exc:
        raise UserError(
            f"Cannot open '{uri}': {exc}. Use a local path or an s3:// URI (credentials and "
            "endpoint from the AWS_* environment variables)."
        ) from exc


def join(base: str, *parts: str) -> str:
    """``base/part/...`` for paths and URIs alike."""
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


def exists(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def is_file(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type == pafs.FileType.File


def list_files(fs: pafs.FileSystem, path: str) -> list[str]:
    """Every file below ``path`` (recursive), sorted; empty when ``path`` does not exist."""
    if not exists(fs, path):
        return []
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
    return sorted(i.path for i in infos if i.type == pafs.FileType.File)


def write_text(fs: pafs.FileSystem, path: str, text: str) -> None:
    parent = path.rsplit("/", 1)[0]
    fs.create_dir(parent, recursive=True)
    with fs.open_output_stream(path) as out:
        out.write(text.encode())


def read_text(fs: pafs.FileSystem, path: str) -> str:
    with fs.open_input_stream(path) as f:
        return bytes(f.read()).decode()


def delete_tree(fs: pafs.FileSystem, path: str) -> None:
    """Remove ``path`` and everything below it; a missing path is fine."""
    try:
        if exists(fs, path):
            fs.delete_dir(path)
    except (FileNotFoundError, OSError):
        if isinstance(fs, pafs.LocalFileSystem) and os.path.exists(path):
            raise


def copy_tree(fs: pafs.FileSystem, src: str, dst: str) -> list[str]:
    """Copy every file under ``src`` to the same relative path under ``dst`` (server-side on S3).

    Returns:
        The destination paths written.
    """
    written = []
    for file in list_files(fs, src):
        target = join(dst, file[len(src.rstrip("/")) + 1 :])
        fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
        fs.copy_file(file, target)
        written.append(target)
    return written
