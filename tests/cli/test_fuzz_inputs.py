"""Hypothesis over what users feed qctl besides options: resource references, config
files and JSONL archives. Each case has one expected exit code (or a small set, with
the reason next to it), one error line, no traceback, and a time bound.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from tests.cli.fuzz_support import (
    MALFORMED_REFS,
    NOWHERE_ENV,
    bounded,
    check_run,
    fuzz_settings,
    surface,
)
from tests.cli.runmain import run_main

fuzz = fuzz_settings


# -- references --------------------------------------------------------------------------------
#: Each command that takes a reference, with REF where it goes and what else it needs.
REF_FORMS: dict[str, list[list[str]]] = {
    "consume": [["consume", "REF"]],
    "produce": [["produce", "REF", "v", "--yes"]],
    "dlq inspect": [["dlq", "inspect", "REF"]],
    "dlq peek": [["dlq", "peek", "REF"]],
    "dlq drain": [["dlq", "drain", "REF", "--to-file", "out.jsonl", "--yes"]],
    "dlq purge": [["dlq", "purge", "REF", "--yes"]],
    "dlq redrive": [
        ["dlq", "redrive", "REF", "--yes"],
        ["dlq", "redrive", "kafka:fuzz.dlq", "--to", "REF", "--yes"],
    ],
    "replay": [
        ["replay", "REF", "--to", "kafka:fuzz-copy", "--yes"],
        ["replay", "kafka:fuzz", "--to", "REF", "--yes"],
    ],
}
REF_PARAMS = {"source", "target", "dlq_ref", "to"}


def test_every_command_taking_a_reference_is_covered() -> None:
    """A new command with a reference parameter must get a form above."""
    taking = {
        s.id
        for s in surface()
        if s.path[0] != "orders" and any(p.name in REF_PARAMS for p in s.command.params)
    }
    assert taking == set(REF_FORMS)


REF_CASES = [
    (name, form, ref)
    for name, forms in REF_FORMS.items()
    for form in forms
    for ref in MALFORMED_REFS
]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


def test_malformed_references_are_usage_errors(workdir: Path, record_property: Any) -> None:
    """Every malformed reference in every place one goes: exit 2, before any network."""
    for _name, form, ref in REF_CASES:
        args = [ref if a == "REF" else a for a in form]
        with bounded():
            run = run_main(args, input="", env=NOWHERE_ENV)
        check_run(run, {2})
    record_property("fuzz_cases", len(REF_CASES))


ref_text = st.one_of(
    st.builds(
        "{}:{}".format,
        st.sampled_from(["kafka", "rabbitmq", "nope", "Kafka", "", "rabbitmq:/"]),
        st.text(
            st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12
        ),
    ),
    st.builds(
        "rabbitmq:{}/{}".format,
        st.sampled_from(["queue", "exchange", "stream", "", "QUEUE"]),
        st.text(max_size=6).filter(lambda t: "\x00" not in t and t.isprintable()),
    ),
)


@fuzz(60)
@example(ref="kafka:t/x")
@example(ref="kafka:t/²")
@example(ref="rabbitmq:queue/a/b")
@given(ref=ref_text)
def test_random_references(ref: str, workdir: Path, record_property: Any) -> None:
    """A random reference either is rejected (2) or names a resource on a closed port (3)."""
    with bounded():
        run = run_main(["consume", ref, "--timeout", "0.3"], input="", env=NOWHERE_ENV)
    record_property("fuzz_cases", 1)
    check_run(run, {2, 3})
    if run.code == 3:
        assert ref.startswith(("kafka:", "rabbitmq:")), run.stderr


# -- config files ------------------------------------------------------------------------------
scalar = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    st.text(min_size=1, max_size=8),
    st.booleans(),
)
truthy_non_mapping = st.one_of(
    st.integers(1, 2**40),
    st.text(min_size=1, max_size=8),
    st.lists(scalar, min_size=1, max_size=3),
)
BROKEN_YAML = ["key: [unclosed", "a: {b", "- x\ny: 1", "\t- tab", "a: b: c", '"open', "@x", "? [a"]

KAFKA_NOWHERE = {"bootstrap_servers": "127.0.0.1:1"}
RABBIT_NOWHERE = {"url": "amqp://fuzz@127.0.0.1:1/"}


def _doc(context: Any, current: Any = "fuzz", name: str = "fuzz") -> str:
    return yaml.safe_dump({"current_context": current, "contexts": {name: context}})


@st.composite
def bad_configs(draw: Any) -> tuple[str, str, int, int]:
    """(kind, file text, exit code of `context show`, exit code of `cluster info`)."""
    kind = draw(
        st.sampled_from(
            [
                "syntax",
                "not-utf8",
                "not-mapping",
                "unknown-top-key",
                "contexts-not-mapping",
                "context-not-mapping",
                "backend-not-mapping",
                "protected-not-bool",
                "bad-context-name",
                "unset-variable",
                "missing-current-context",
                "unknown-rabbitmq-key",
                "failing-password-command",
                "missing-password-file",
                "secret-and-source",
                "unknown-kafka-property",
                "url-password-without-user",
            ]
        ),
        label="kind",
    )
    good = yaml.safe_dump({"contexts": {"fuzz": {"kafka": KAFKA_NOWHERE}}})
    if kind == "syntax":
        lines = good.splitlines()
        at = draw(st.integers(0, len(lines)))
        lines.insert(at, draw(st.sampled_from(BROKEN_YAML)))
        return kind, "\n".join(lines), 2, 2
    if kind == "not-utf8":
        at = draw(st.integers(0, len(good)))
        bad = draw(st.sampled_from(["\udcff", "\udcc3", "\udce9x"]))
        return kind, good[:at] + bad + good[at:], 2, 2
    if kind == "not-mapping":
        return kind, yaml.safe_dump(draw(truthy_non_mapping)), 2, 2
    if kind == "unknown-top-key":
        key = draw(st.text(min_size=1, max_size=10).filter(lambda k: k not in ("contexts",)))
        text = yaml.safe_dump({"contexts": {}, key: draw(scalar)})
        return kind, text if key != "current_context" else text + "\nbogus: 1\n", 2, 2
    if kind == "contexts-not-mapping":
        return kind, yaml.safe_dump({"contexts": draw(truthy_non_mapping)}), 2, 2
    if kind == "context-not-mapping":
        return kind, _doc(draw(truthy_non_mapping)), 2, 2
    if kind == "backend-not-mapping":
        backend = draw(st.sampled_from(["kafka", "rabbitmq", "other"]))
        value = draw(st.one_of(st.none(), truthy_non_mapping))
        return kind, _doc({backend: value}), 2, 2
    if kind == "protected-not-bool":
        value = draw(st.one_of(st.none(), truthy_non_mapping, st.just("yes")))
        return kind, _doc({"protected": value, "kafka": KAFKA_NOWHERE}), 2, 2
    if kind == "bad-context-name":
        name = draw(st.text(min_size=1, max_size=8).filter(lambda n: not n[0].isalnum()))
        return kind, _doc({"kafka": KAFKA_NOWHERE}, current=name, name=name), 2, 2
    if kind == "unset-variable":
        var = "QCTL_FUZZ_UNSET_" + draw(st.text("ABCXYZ_", min_size=1, max_size=6))
        where = draw(st.sampled_from(["bootstrap_servers", "sasl.password", "client.id"]))
        context = {"kafka": KAFKA_NOWHERE | {where: f"x${{{var}}}y"}}
        return kind, _doc(context), 2, 2
    if kind == "missing-current-context":
        # A named thing that does not exist: exit 1, like any unknown resource.
        ghost = "ghost-" + draw(st.text("abc123", min_size=1, max_size=6))
        return kind, _doc({"kafka": KAFKA_NOWHERE}, current=ghost), 1, 1
    # The rest is only found when a backend is about to connect: `context show` is fine.
    if kind == "unknown-rabbitmq-key":
        key = draw(st.sampled_from(["passwd", "host", "vhost", "user", "ssl", "url2"]))
        return kind, _doc({"rabbitmq": RABBIT_NOWHERE | {key: draw(scalar)}}), 0, 2
    if kind == "failing-password-command":
        command = draw(st.sampled_from(["exit 1", "false", "true", "printf ''", "/nonexistent"]))
        return kind, _doc({"rabbitmq": RABBIT_NOWHERE | {"password_command": command}}), 0, 2
    if kind == "missing-password-file":
        path = draw(st.sampled_from(["/nonexistent/pw", "no-such-file", "", "/"]))
        return kind, _doc({"kafka": KAFKA_NOWHERE | {"sasl.password_file": path}}), 0, 2
    if kind == "secret-and-source":
        context = {"kafka": KAFKA_NOWHERE | {"sasl.password": "a", "sasl.password_command": "b"}}
        return kind, _doc(context), 0, 2
    if kind == "unknown-kafka-property":
        prop = "fuzz." + draw(st.text("abcdef.", min_size=1, max_size=8))
        return kind, _doc({"kafka": KAFKA_NOWHERE | {prop: draw(scalar)}}), 0, 2
    assert kind == "url-password-without-user"
    context = {"rabbitmq": {"url": "amqp://127.0.0.1:1/", "password": "pw-fuzz"}}
    return kind, _doc(context), 0, 2


@fuzz(120)
@example(case=("syntax", "contexts: {fuzz: {kafka: [unclosed", 2, 2))
@example(case=("not-mapping", "- a\n- b\n", 2, 2))
@example(
    case=(
        "missing-password-file",
        _doc({"kafka": KAFKA_NOWHERE | {"sasl.password_file": "/"}}),
        0,
        2,
    )
)
@given(case=bad_configs())
def test_malformed_config_files(
    case: tuple[str, str, int, int], isolated_config: Path, record_property: Any
) -> None:
    _kind, text, show_code, info_code = case
    isolated_config.parent.mkdir(parents=True, exist_ok=True)
    isolated_config.write_bytes(text.encode("utf-8", "surrogateescape"))
    os.chmod(isolated_config, 0o600)
    env = {k: v for k, v in NOWHERE_ENV.items() if k == "QCTL_TIMEOUT"}
    with bounded():
        show = run_main(["context", "show"], env=env)
        info = run_main(["cluster", "info", "--timeout", "0.5"], env=env)
    record_property("fuzz_cases", 2)
    check_run(show, {show_code})
    check_run(info, {info_code})
    if info_code == 2:
        assert "qctl: error: " in info.stderr


# -- JSONL archives ----------------------------------------------------------------------------
GOOD_LINES = [
    '{"key": null, "value": "v", "headers": []}',
    '{"key": "k", "value": {"b64": "AAEC"}, "headers": [["h", "x"], ["h", null]]}',
    '{"value": "v", "timestamp": 1700000000000}',
]
BAD_LINES = [
    "not json",
    "[]",
    "1",
    "null",
    '"text"',
    '{"value": {"b64": "!!!"}}',
    '{"value": {"b64": 5}}',
    '{"key": {"b64": "%%%"}}',
    '{"headers": "x"}',
    '{"headers": [["k"]]}',
    '{"headers": [[1, "v"]]}',
    '{"headers": [["k", {"b64": "@@"}]]}',
    '{"timestamp": "yesterday"}',
    '{"timestamp": 1e999}',
    '{"source": 3}',
    '{"value": "v"',
]


@st.composite
def bad_archives(draw: Any) -> bytes:
    """Valid lines around at least one that breaks the format."""
    good = st.sampled_from(GOOD_LINES)
    bad = st.one_of(
        st.sampled_from(BAD_LINES),
        # a valid line cut short
        st.builds(lambda line, cut: line[: max(1, cut % len(line))], good, st.integers(1, 60)),
        # a huge line that never ends
        st.integers(1, 3).map(lambda mb: '{"value": "' + "a" * (mb << 20)),
        # random text that is not an object
        st.text(max_size=20).filter(lambda t: not t.strip().startswith("{")),
    )
    before = draw(st.lists(good, max_size=3))
    after = draw(st.lists(st.one_of(good, bad), max_size=2))
    line = draw(bad)
    if not line.strip():
        line = "{"
    data = "\n".join([*before, line, *after]).encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        data = base64.b64encode(data)  # a base64 dump where JSON lines were expected
        if data.strip().startswith(b"{"):
            data = b"x" + data
    return data


@fuzz(40)
@example(data=b'{"value": "v"}\n{"val\n')
@example(data=b'{"value": {"b64": "!!!"}}\n')
@given(data=bad_archives())
def test_malformed_archives(data: bytes, workdir: Path, record_property: Any) -> None:
    """produce --format jsonl (file and stdin) and dlq redrive --from-file: exit 2."""
    archive = workdir / "bad.jsonl"
    archive.write_bytes(data)
    runs = []
    with bounded():
        runs.append(
            run_main(
                ["produce", "kafka:fuzz", "--format", "jsonl", "--file", "bad.jsonl", "--dry-run"],
                env=NOWHERE_ENV,
            )
        )
        runs.append(
            run_main(
                ["produce", "kafka:fuzz", "--format", "jsonl", "--dry-run"],
                input=data,
                env=NOWHERE_ENV,
            )
        )
        runs.append(
            run_main(
                ["dlq", "redrive", "kafka:fuzz.dlq", "--from-file", "bad.jsonl", "--dry-run"],
                env=NOWHERE_ENV,
            )
        )
    record_property("fuzz_cases", len(runs))
    for run in runs:
        check_run(run, {2})
        assert "line " in run.stderr.splitlines()[-1], run.stderr


def test_a_valid_archive_passes_the_same_commands(workdir: Path) -> None:
    """The oracle for the test above: without the bad line the same commands succeed."""
    (workdir / "good.jsonl").write_text("\n".join(GOOD_LINES) + "\n")
    for args in (
        ["produce", "kafka:fuzz", "--format", "jsonl", "--file", "good.jsonl", "--dry-run"],
        ["dlq", "redrive", "kafka:fuzz.dlq", "--from-file", "good.jsonl", "--dry-run"],
    ):
        run = run_main(args, env=NOWHERE_ENV)
        check_run(run, {0})
        assert "3 messages would be sent" in run.stderr or "3 message(s) looked at" in run.stderr
