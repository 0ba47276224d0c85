"""Run ``qctl.cli.main`` in-process with click's isolation, exit code and all.

``CliRunner.invoke(cli, ...)`` bypasses ``main()``, which is where errors become one
line and an exit code; this runs the real entry point, minus a new interpreter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from click.testing import CliRunner

from qctl.cli import main


@dataclass
class Run:
    args: list[str]
    code: int
    stdout: str
    stderr: str


def run_main(
    args: Sequence[str], input: str | bytes | None = None, env: Mapping[str, str] | None = None
) -> Run:
    runner = CliRunner()
    with runner.isolation(input=input, env=env) as (out, err, _):
        code = 0
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return Run(
        list(args),
        code,
        out.getvalue().decode("utf-8", "replace"),
        err.getvalue().decode("utf-8", "replace"),
    )
