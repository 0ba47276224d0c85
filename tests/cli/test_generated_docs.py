"""Committed completions and man pages are current, and they actually work."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from qctl.cli import BUILTIN_COMMANDS
from qctl.docgen.__main__ import generated

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("rel", sorted(generated()))
def test_generated_file_is_current(rel: str) -> None:
    path = REPO / rel
    assert path.exists(), f"{rel} is missing: run dev/gen-docs"
    assert path.read_text() == generated()[rel], f"{rel} is stale: run dev/gen-docs"


def bash_complete(*words: str, with_qctl: bool = False) -> list[str]:
    """Run the committed bash completion for a command line; return COMPREPLY."""
    script = (
        f"source {REPO / 'completions/qctl.bash'}\n"
        'COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1))\n'
        '_qctl; printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    path = os.environ.get("PATH", "")
    bindir = str(Path(sys.executable).parent)
    if with_qctl:
        path = f"{bindir}:{path}"
    else:
        path = ":".join(
            p for p in path.split(":") if p != bindir and not (Path(p) / "qctl").exists()
        )
    proc = subprocess.run(
        ["bash", "-c", script, "bash", *words],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": path},
        check=True,
        timeout=60,
    )
    return [line for line in proc.stdout.splitlines() if line]


def test_bash_completes_commands_options_and_choices_without_qctl_on_path() -> None:
    assert bash_complete("qctl", "") == sorted(BUILTIN_COMMANDS)
    assert bash_complete("qctl", "cont") == ["context"]
    assert bash_complete("qctl", "context", "") == ["delete", "list", "set", "show", "use"]
    assert "--timeout" in bash_complete("qctl", "cluster", "info", "--t")
    assert bash_complete("qctl", "-o", "") == ["table", "json", "yaml"]
    assert bash_complete("qctl", "-C", "x", "cluster", "info", "-o", "j") == ["json"]


def test_bash_completes_context_names_from_the_config_file(isolated_config: Path) -> None:
    if not (Path(sys.executable).parent / "qctl").exists():
        pytest.skip("qctl is not installed as a console script in this environment")
    isolated_config.parent.mkdir(parents=True)
    isolated_config.write_text("contexts:\n  prod-eu: {}\n  staging: {}\n")
    assert bash_complete("qctl", "--context", "", with_qctl=True) == ["prod-eu", "staging", "local"]
    assert bash_complete("qctl", "context", "use", "st", with_qctl=True) == ["staging"]
    assert bash_complete("qctl", "cluster", "info", "-b", "", with_qctl=True) == [
        "kafka",
        "rabbitmq",
    ]


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh not installed")
def test_zsh_script_parses_and_its_tree_answers() -> None:
    script = REPO / "completions/_qctl"
    subprocess.run(["zsh", "-n", str(script)], check=True, timeout=30)
    proc = subprocess.run(
        ["zsh", "-c", f"compdef() {{ :; }}; source {script}; __qctl_subcommands context"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert proc.stdout.split() == ["delete", "list", "set", "show", "use"]


@pytest.mark.skipif(shutil.which("fish") is None, reason="fish not installed")
def test_fish_completes_commands() -> None:
    script = REPO / "completions/qctl.fish"
    proc = subprocess.run(
        ["fish", "-c", f"source {script}; complete -C 'qctl cl'"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert proc.stdout.splitlines()[0].split("\t")[0] == "cluster"


@pytest.mark.skipif(shutil.which("man") is None, reason="man not installed")
@pytest.mark.parametrize(
    "page", sorted(p.removeprefix("man/") for p in generated() if p.startswith("man/"))
)
def test_man_pages_render(page: str) -> None:
    proc = subprocess.run(
        ["man", "-l", str(REPO / "man" / page)],
        capture_output=True,
        text=True,
        env={**os.environ, "MANPAGER": "cat", "MANWIDTH": "80"},
        check=True,
        timeout=30,
    )
    assert "NAME" in proc.stdout and "SYNOPSIS" in proc.stdout
    assert "warning" not in proc.stderr.lower()
    if page == "qctl.1":
        assert "EXIT STATUS" in proc.stdout and "130" in proc.stdout
