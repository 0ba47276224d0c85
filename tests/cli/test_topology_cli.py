"""`qctl topology` argument handling, exit codes and messages (no cluster needed)."""

from __future__ import annotations

import contextlib
import io
import json
import re
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qctl.cli import main
from tests.cli.test_root import run_qctl

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "order-pipeline.yaml"


def run_main(*args: str) -> tuple[int, str, str]:
    """Run qctl in-process (fast enough for hypothesis), like the console script."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
        except SystemExit as exc:
            code = int(exc.code or 0)
        else:  # pragma: no cover - main always exits
            code = 0
    return code, out.getvalue(), err.getvalue()


def test_validate_the_example() -> None:
    code, out, err = run_main("topology", "validate", str(EXAMPLE))
    assert code == 0, err
    assert "valid (9 topics, 6 exchanges, 12 queues, 16 bindings, 1 policies" in out
    code, out, _ = run_main("topology", "validate", str(EXAMPLE), "--env", "dev", "-o", "json")
    assert code == 0
    data = json.loads(out)
    assert data["valid"] and data["environments"] == ["dev"] and data["issues"] == []


def test_validate_lists_every_error_with_positions_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "kafka:\n  topics:\n    - name: a\n      partitons: 3\n"
        "rabbitmq:\n  bindings:\n    - {source: nowhere, destination: q}\n"
        "environments:\n  dev:\n    kafka: {topicz: []}\n"
    )
    code, out, err = run_main("topology", "validate", str(bad))
    assert code == 2
    lines = err.strip().splitlines()
    assert lines[0] == (
        f"{bad}:4:7: error: unknown key 'partitons' in topic 'a' (did you mean 'partitions'?)"
    )
    assert f"{bad}:7:7: error: binding nowhere -> q: exchange 'nowhere' is not declared" in err
    assert "[environment dev]" in err and "did you mean 'topics'?" in err
    assert lines[-1] == (
        f"qctl: error: {bad} has 4 errors — fix them (each is listed above as FILE:LINE:COLUMN)"
    )
    assert out == "" and "Traceback" not in err
    code, out, _ = run_main("topology", "validate", str(bad), "-o", "json")
    assert code == 2
    assert json.loads(out)["issues"][0] == {
        "file": str(bad),
        "line": 4,
        "column": 7,
        "severity": "error",
        "message": "unknown key 'partitons' in topic 'a' (did you mean 'partitions'?)",
    }


def test_missing_and_unreadable_files_are_exit_2(tmp_path: Path) -> None:
    code, _, err = run_main("topology", "plan", str(tmp_path / "nope.yaml"))
    assert code == 2 and "no such file" in err
    code, _, err = run_main("topology", "validate", str(tmp_path))
    assert code == 2 and "directory" in err


def test_plan_and_apply_check_the_file_before_connecting(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kafka:\n  topics:\n    - name: a\n      partitions: -1\n")
    env = {"QCTL_KAFKA_BOOTSTRAP": "127.0.0.1:1"}  # never contacted
    for command in ("plan", "apply", "destroy"):
        yes = [] if command == "plan" else ["--yes"]
        proc = run_qctl("topology", command, str(bad), *yes, env=env)
        assert proc.returncode == 2, proc.stderr
        assert f"{bad}:4:19: error: 'partitions' of topic 'a' must be at least 1" in proc.stderr
        assert "Traceback" not in proc.stderr


def test_prune_and_destroy_need_an_owner_label(tmp_path: Path) -> None:
    plain = tmp_path / "plain.yaml"
    plain.write_text("kafka:\n  topics:\n    - {name: a, partitions: 1}\n")
    env = {"QCTL_KAFKA_BOOTSTRAP": "127.0.0.1:1"}
    for args in (("plan", "--prune"), ("apply", "--prune", "--yes"), ("destroy", "--yes")):
        proc = run_qctl("topology", args[0], str(plain), *args[1:], env=env)
        assert proc.returncode == 2, proc.stderr
        assert "no 'owner:' label" in proc.stderr


def test_unreachable_cluster_is_exit_3(tmp_path: Path) -> None:
    proc = run_qctl(
        "topology",
        "plan",
        str(EXAMPLE),
        "-b",
        "kafka",
        "--timeout",
        "2",
        env={"QCTL_KAFKA_BOOTSTRAP": "127.0.0.1:1"},
    )
    assert proc.returncode == 3
    assert proc.stderr.strip().splitlines()[-1].startswith("qctl: error: kafka at 127.0.0.1:1")


def test_export_rejects_bad_regex() -> None:
    code, _, err = run_main("topology", "export", "--include", "(")
    assert code == 2 and "--include '(' is not a valid regular expression" in err


broken_yaml = st.one_of(
    st.text(max_size=200),
    st.builds(
        lambda doc, cut: yaml.safe_dump(doc)[:cut],
        st.recursive(
            st.one_of(st.none(), st.integers(), st.text(max_size=8), st.booleans()),
            lambda c: st.one_of(
                st.lists(c, max_size=3),
                st.dictionaries(
                    st.sampled_from(["kafka", "topics", "name", "rabbitmq", "queues", "x"]),
                    c,
                    max_size=3,
                ),
            ),
            max_leaves=12,
        ),
        st.integers(min_value=0, max_value=200),
    ),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(broken_yaml)
def test_malformed_files_exit_2_with_file_line_and_no_traceback(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        code, _out, err = run_main("topology", "validate", str(path))
    assert "Traceback" not in err and "qctl: error: unexpected" not in err
    if code == 0:
        return  # some random documents are valid (e.g. an empty kafka section)
    assert code == 2, err
    issues = [line for line in err.splitlines() if not line.startswith("qctl: error:")]
    assert issues, err
    assert all(
        re.match(rf"^{re.escape(str(path))}:\d+:\d+: (error|warning): ", line) for line in issues
    ), err


@pytest.mark.parametrize("command", ["validate", "plan", "apply", "export", "destroy"])
def test_help(command: str) -> None:
    code, out, _ = run_main("topology", command, "--help")
    assert code == 0 and "Usage: qctl topology" in out
