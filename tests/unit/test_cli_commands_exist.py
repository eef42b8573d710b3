"""Every `mlplat …` command named in an error message, a hint, the README or the docs exists.

A hint that names a command a user cannot run (`mlplat deploy fraud`) is worse than none: this
collects each one, walks it down the CLI's command tree and runs its `--help`.
"""

from __future__ import annotations

import re
from pathlib import Path

import typer
from typer.testing import CliRunner

from mlplat.cli import app

REPO = Path(__file__).resolve().parents[2]
_TICKED = re.compile(r"`(mlplat [^`\n]+)`")
_CONSOLE = re.compile(r"^\s*\$?\s*(mlplat [^#\n]+)", re.MULTILINE)


def _expand(command: str) -> list[str]:
    """``mlplat cluster up|down`` → both; a template (``mlplat <noun> <verb>``) → none."""
    words = command.split()
    if len(words) > 1 and words[1].startswith("<"):
        return []
    for i, word in enumerate(words):
        if "|" in word and not word.startswith("-"):
            return [c for alt in word.split("|")
                    for c in _expand(" ".join([*words[:i], alt, *words[i + 1:]]))]
    return [command]


def _named_commands() -> dict[str, str]:
    """command text → where it was found (file)."""
    found: dict[str, str] = {}
    sources = [*(REPO / "platform" / "mlplat").rglob("*.py"), REPO / "README.md",
               *(REPO / "docs").rglob("*.md"), *(REPO / "jobs").rglob("*.py")]
    for path in sources:
        text = path.read_text()
        for match in _TICKED.finditer(text):
            for command in _expand(match.group(1).strip()):
                found.setdefault(command, str(path.relative_to(REPO)))
        if path.suffix == ".md":
            blocks = re.findall(r"```(?:bash|console|sh)\n(.*?)```", text, re.DOTALL)
            for block in blocks:
                for match in _CONSOLE.finditer(block):
                    for command in _expand(match.group(1).strip()):
                        found.setdefault(command, str(path.relative_to(REPO)))
    return found


def _command_path(root: object, words: list[str]) -> list[str] | str:
    """The sub-command names ``words`` walk down to, or why they do not resolve."""
    path: list[str] = []
    cmd = root
    for word in words:
        commands = getattr(cmd, "commands", None)  # a group (typer vendors its own click)
        if commands is None:
            break  # a leaf: the rest are its arguments and options
        if word.startswith("-"):
            break
        if word not in commands:
            return f"no command '{' '.join([*path, word])}' (have {sorted(commands)})"
        cmd = commands[word]
        path.append(word)
    return path


def test_every_named_command_exists_and_has_help() -> None:
    named = _named_commands()
    assert len(named) > 30, sorted(named)  # the collector really finds them
    root = typer.main.get_command(app)
    runner = CliRunner()
    missing, broken = [], []
    for command, where in sorted(named.items()):
        words = command.split()[1:]
        path = _command_path(root, words)
        if isinstance(path, str):
            missing.append(f"{where}: `{command}`: {path}")
            continue
        result = runner.invoke(app, [*path, "--help"])
        if result.exit_code != 0:
            broken.append(f"{where}: `{command}`: --help exited {result.exit_code}")
    assert missing == [] and broken == [], missing + broken


def test_the_collector_catches_a_command_that_does_not_exist() -> None:
    root = typer.main.get_command(app)
    assert isinstance(_command_path(root, ["deploy", "fraud"]), str)
    assert _command_path(root, ["deploy", "promote", "fraud", "2"]) == ["deploy", "promote"]
