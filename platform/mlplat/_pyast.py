"""``ast.parse`` that survives CPython 3.11's shared AST recursion counter.

Before 3.11.8 (gh-106905) the AST converter keeps its recursion depth in interpreter-wide
state, so two threads converting ASTs at once (here: a Ray or Serve background thread while a
test or ``mlplat cluster render`` parses a file) can make one of them fail with
``SystemError: AST constructor recursion depth mismatch``. The source is fine; parsing again
succeeds.
"""

from __future__ import annotations

import ast
from typing import Any

_ATTEMPTS = 5
_PLAIN_PARSE = ast.parse
"""Captured at import, so ``parse_source`` can stand in for ``ast.parse`` (tests/conftest.py)."""


def parse_source(source: str | bytes, filename: str = "<unknown>", mode: str = "exec",
                 **kwargs: Any) -> Any:
    """``ast.parse(source)``, retried when CPython's shared counter raced (see the module doc).

    Example:
        >>> parse_source("import os").body[0].names[0].name
        'os'
    """
    for attempt in range(_ATTEMPTS):
        try:
            return _PLAIN_PARSE(source, filename, mode, **kwargs)
        except SystemError as exc:
            if "recursion depth mismatch" not in str(exc) or attempt == _ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")
