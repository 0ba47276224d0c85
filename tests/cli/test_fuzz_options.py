"""Hypothesis over every command's options: random combinations and values.

Each case runs the real entry point in-process against closed ports and must end with
a documented exit code and one error line, within a bound. Seeds are derandomized, so
a failure reproduces; the total number of cases is reported in the terminal summary.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.cli.fuzz_support import (
    NOWHERE_ENV,
    Surface,
    argv_for,
    bounded,
    check_run,
    fuzz_settings,
    surface,
    write_fixture_files,
)
from tests.cli.runmain import run_main

SURFACE = surface()
EXAMPLES_PER_COMMAND = 30

#: 0 success (help, local commands), 1 the operation failed (no such context, job or
#: snapshot; a prompt without a terminal), 2 usage/input, 3 unreachable (every cluster
#: address is a closed port). Partial (4), drift (5) and threshold (6) need a cluster.
ALLOWED = {0, 1, 2, 3}

FUZZ_CONFIG = {
    "current_context": "fuzz",
    "contexts": {
        "fuzz": {
            "kafka": {"bootstrap_servers": "127.0.0.1:1"},
            "rabbitmq": {"url": "amqp://guest:guest@127.0.0.1:1/"},
        }
    },
}


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return write_fixture_files(cwd)


def test_the_surface_includes_lazy_and_plugin_commands() -> None:
    ids = {s.id for s in SURFACE}
    assert {"consume", "dlq drain", "context set", "orders run", "topology plan"} <= ids
    assert len(ids) >= 30


@pytest.mark.parametrize("target", SURFACE, ids=lambda s: s.id)
def test_random_options(
    target: Surface, workdir: list[str], isolated_config: Path, record_property
) -> None:
    cases = 0

    @fuzz_settings(EXAMPLES_PER_COMMAND)
    @given(st.data())
    def run_case(data: st.DataObject) -> None:
        nonlocal cases
        cases += 1
        isolated_config.parent.mkdir(parents=True, exist_ok=True)
        isolated_config.write_text(yaml.safe_dump(FUZZ_CONFIG))
        isolated_config.chmod(0o600)
        args = data.draw(argv_for(target, workdir), label="argv")
        with bounded():
            run = run_main(args, input="", env=NOWHERE_ENV)
        check_run(run, ALLOWED, target.path)

    run_case()
    record_property("fuzz_cases", cases)
    assert cases > 0


@example(args=["consume", "kafka:x", "--timeout", "inf"])
@example(args=["consume", "kafka:x", "--timeout", "nan"])
@example(args=["dlq", "redrive", "kafka:x.dlq", "--rate", "nan", "--yes"])
@example(args=["lag", "--interval", "inf", "--watch", "--count", "1"])
@example(args=["produce", "kafka:x", "\udcff"])
@example(args=["consume", "\udcff"])
@example(args=["produce", "kafka:x", "v", "--key", "\udcff", "--dry-run"])
@example(args=["produce", "kafka:x", "v", "--header", "h=\udcff", "--dry-run"])
@example(args=["produce", "kafka:x", "\udcff", "--dry-run"])
@example(args=["orders", "topology", "bad.yaml"])
@example(args=["dlq", "list", "--timeout", "0.3"])
@example(args=["dlq", "list", "--backend", "\x1e", "--timeout", "0.3"])
@example(args=["dlq", "list", "--backend", "fuzz", "--backend", "\x1e"])
@example(args=["cluster", "info", "--backend", "\x1e", "--backend", "\u2028"])
@example(args=["produce", "kafka:x", "v", "--count", "9223372036854775808", "--yes"])
@example(args=["consume", "kafka:x", "--where", "value ==\nx"])
@settings(
    max_examples=1,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(args=st.just(["--help"]))
def test_regressions(args: list[str], workdir: list[str]) -> None:
    """Cases the fuzzer found once; each must stay a one-line usage error (or help)."""
    with bounded():
        run = run_main(args, input="", env=NOWHERE_ENV)
    check_run(run, {0, 2, 3}, tuple(a for a in args[:2] if a in ("dlq", "list", "cluster", "info")))
