"""Hypothesis: no input makes the loader crash; every problem has a file:line:column."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qctl.topology import schema
from qctl.topology.loader import loads
from qctl.topology.validate import validate

EXAMPLE = (Path(__file__).resolve().parents[2] / "examples" / "order-pipeline.yaml").read_text()
POSITION = re.compile(r"^f\.yaml:\d+:\d+: (error|warning): \S")

VOCABULARY = sorted(
    set(schema.TOP_KEYS)
    | set(schema.TOPIC_KEYS)
    | set(schema.QUEUE_KEYS)
    | set(schema.EXCHANGE_KEYS)
    | set(schema.BINDING_KEYS)
    | set(schema.POLICY_KEYS)
    | {"topics", "exchanges", "queues", "bindings", "policies", "configs", "dev", "retention.ms"}
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["classic", "quorum", "stream", "topic", "headers", "${HOME}", "${NOPE}"]),
)
keys = st.one_of(st.sampled_from(VOCABULARY), st.text(min_size=1, max_size=10))
documents = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=5)
    ),
    max_leaves=30,
)


def check(text: str) -> None:
    topo, issues = loads(text, "f.yaml", environ={"HOME": "/h"})
    if topo is not None:
        issues += validate(topo)
    else:
        assert any(i.severity == "error" for i in issues)
    for issue in issues:
        assert POSITION.match(str(issue)), str(issue)
        assert issue.location.line >= 1 and issue.location.column >= 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_arbitrary_text_never_crashes(text: str) -> None:
    check(text)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_wrongly_typed_documents_never_crash(doc: Any) -> None:
    wrapped = {"kafka": {"topics": [doc]}, "rabbitmq": {"queues": [doc], "bindings": doc}}
    for candidate in (doc, wrapped):
        try:
            text = yaml.safe_dump(candidate)
        except yaml.YAMLError:
            continue
        check(text)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=len(EXAMPLE)),
            st.integers(min_value=0, max_value=8),
            st.text(alphabet=":-[]{}&*!|>'\"%@`#,? \n\t\x00\x85abc0123", max_size=4),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_mutations_of_the_example_never_crash(edits: list[tuple[int, int, str]]) -> None:
    text = EXAMPLE
    for offset, cut, insert in edits:
        at = min(offset, len(text))
        text = text[:at] + insert + text[at + cut :]
    check(text)
