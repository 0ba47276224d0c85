"""The CLI surface, value strategies and the one-line-error check for the fuzz suites.

Commands are found by walking the click tree from the root group (lazy built-ins and
plugin commands such as ``orders`` included), so a new command or option is fuzzed
without touching the suites. Every cluster address points at a closed port through
the environment overrides, which win over any context a fuzzed `context set` writes,
so no case can reach a real broker.
"""

from __future__ import annotations

import re
import signal
import string
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from qctl.cli import cli
from tests.cli.runmain import Run


def fuzz_settings(max_examples: int) -> settings:
    """Fixed example counts and derandomized seeds, so runtime and findings reproduce.

    For a longer hunt: QCTL_FUZZ_SCALE=10 multiplies the counts and QCTL_FUZZ_RANDOM=1
    draws new inputs each run (hypothesis prints a failing example's reproduction).
    """
    import os

    scale = float(os.environ.get("QCTL_FUZZ_SCALE", "1"))
    return settings(
        max_examples=max(1, int(max_examples * scale)),
        deadline=None,
        derandomize=os.environ.get("QCTL_FUZZ_RANDOM") != "1",
        database=None,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )


#: Nothing listens there: commands that pass their argument checks fail fast (exit 3).
NOWHERE_ENV = {
    "QCTL_KAFKA_BOOTSTRAP": "127.0.0.1:1",
    "QCTL_RABBITMQ_URL": "amqp://guest:guest@127.0.0.1:1/",
    "QCTL_RABBITMQ_MANAGEMENT_URL": "http://127.0.0.1:1",
    "QCTL_TIMEOUT": "0.5",
}

#: A case running longer than this is a hang (real runs end within a few timeouts).
CASE_SECONDS = 30

MALFORMED_REFS = [
    "",
    " ",
    "kafka:",
    "kafka:/",
    "kafka:t/x",
    "kafka:t/-1",
    "kafka:t/99999999999999999999999",
    "kafka:t/2147483648",
    "kafka:t/²",
    "kafka:t/٣",
    "kafka:/0",
    "rabbitmq:queue/",
    "rabbitmq:exchange/",
    "rabbitmq:",
    "rabbitmq:nothing/x",
    "rabbitmq://",
    "rabbitmq:///queue/",
    "nope:x",
    ":x",
    "kafka",
]

NASTY_TEXT = [
    "",
    " ",
    "-",
    "--",
    "-1",
    "0",
    "x",
    "🙂",
    "é" * 3,
    "\udcff",  # an argv byte that is not UTF-8 (surrogateescape)
    "a" * 5000,
    "${NOPE}",
    "%s%n",
    "{0}",
    "'",
    '"',
    "\n",
    "k=v",
    "=",
    "kafka:fuzz-topic",
    "rabbitmq:queue/fuzz",
    "rabbitmq:exchange/fuzz",
    # durations and timestamps
    "-15m",
    "15x",
    "1e9d",
    "99999999999999999999d",
    "P1D",
    "now-",
    "@-1",
    "@99999999999999999999",
    "2026-13-45T99:00",
    "9999-12-31T23:59:59Z",
    "0001-01-01",
    "earliest",
    "latest+",
    "-99999999999999999999",
    # filter expressions and format strings
    "value ==",
    "key ~ '('",
    "(((",
    "header.x > 1e999",
    "%",
    "%Z",
    "%k%v%",
]

INTS = ["0", "-1", "1", "3", "-99999999999999999999", "99999999999999999999", "1e3", "abc", "٣"]
FLOATS = ["0", "-1", "0.05", "0.3", "nan", "inf", "-inf", "1e308", "abc", "", "1_0"]

#: Options whose value could make a case run long on purpose: kept small.
BOUNDED = {"--timeout", "--interval", "--duration", "--idle", "--max-wait"}


@dataclass(frozen=True)
class Surface:
    path: tuple[str, ...]
    command: click.Command

    @property
    def id(self) -> str:
        return " ".join(self.path)


def surface() -> list[Surface]:
    """Every leaf command under the root group, found by walking the click tree."""
    found: list[Surface] = []

    def walk(cmd: click.Command, path: tuple[str, ...], ctx: click.Context) -> None:
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                assert sub is not None, name
                walk(sub, (*path, name), click.Context(sub, parent=ctx, info_name=name))
        else:
            found.append(Surface(path, cmd))

    walk(cli, (), click.Context(cli, info_name="qctl"))
    return found


def text_values(files: list[str]) -> st.SearchStrategy[str]:
    printable = st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=16
    )
    return st.one_of(
        st.sampled_from(NASTY_TEXT + MALFORMED_REFS + files),
        printable,
        st.text(string.ascii_letters + string.digits + ":/.-_", max_size=12),
    )


#: Plausible values by parameter name, so most cases get past the first check and go
#: deeper; a fifth of the values are drawn from the hostile pools instead.
PLAUSIBLE: dict[str, list[str]] = {
    "ref": [
        "kafka:fuzz-topic",
        "kafka:fuzz-topic/0",
        "rabbitmq:queue/fuzz",
        "kafka:fuzz.dlq",
        "rabbitmq:exchange/fuzz",
        "rabbitmq:queue/fuzz.dlq",
    ],
    "time": ["-15m", "earliest", "latest", "2026-01-01T00:00:00Z", "10s", "1h", "@0", "now"],
    "where": ['value == "x"', "key ~ 'a'", "header.h == '1'", "partition == 0"],
    "pair": ["k=v", "security.protocol=PLAINTEXT", "h=1"],
    "format": ["%k %v\\n", "%t/%p@%o %v"],
    "name": ["fuzz", "fuzz-group", "fuzz-topic", "local"],
}
_PLAUSIBLE_BY_NAME = {
    "source": "ref",
    "target": "ref",
    "dlq_ref": "ref",
    "to": "ref",
    "start": "time",
    "end": "time",
    "older_than": "time",
    "to_datetime": "time",
    "by_duration": "time",
    "max_time_lag": "time",
    "duration": "time",
    "idle": "time",
    "retry_backoff": "time",
    "max_wait": "time",
    "where": "where",
    "headers": "pair",
    "properties": "pair",
    "kafka_properties": "pair",
    "rabbitmq_properties": "pair",
    "header": "pair",
    "property": "pair",
    "format_string": "format",
}


def value_for(param: click.Parameter, files: list[str]) -> st.SearchStrategy[str]:
    """Strings for one parameter: mostly plausible ones, a fifth plainly wrong ones."""
    return st.one_of(
        plausible_value(param, files),
        plausible_value(param, files),
        plausible_value(param, files),
        plausible_value(param, files),
        hostile_value(param, files),
    )


def plausible_value(param: click.Parameter, files: list[str]) -> st.SearchStrategy[str]:
    kind = param.type
    name = param.opts[0] if param.opts else ""
    if name in BOUNDED:
        floats = isinstance(kind, click.types.FloatParamType)
        return st.sampled_from(["0.3", "0.2"] if floats else ["1s", "0.3s"])
    if isinstance(kind, click.Choice):
        return st.sampled_from([str(c) for c in kind.choices])
    if isinstance(kind, click.types.IntParamType):
        return st.integers(0, 5).map(str)
    if isinstance(kind, click.types.FloatParamType):
        return st.sampled_from(["0.3", "1", "0.5", "100"])
    if isinstance(kind, click.Path | click.File):
        return st.sampled_from([*files, "new-output.jsonl"])
    group = _PLAUSIBLE_BY_NAME.get(param.name or "", "name")
    return st.sampled_from(PLAUSIBLE[group])


def hostile_value(param: click.Parameter, files: list[str]) -> st.SearchStrategy[str]:
    kind = param.type
    name = param.opts[0] if param.opts else ""
    if name in BOUNDED:
        return st.sampled_from(["0", "-1", "0.05", "nan", "inf", "abc", "", "1e9"])
    if isinstance(kind, click.Choice):
        return st.sampled_from(["", "TABLE", "nope", "🙂"])
    if isinstance(kind, click.types.IntParamType):
        return st.one_of(
            st.sampled_from(INTS),
            st.integers(min_value=-(2**70), max_value=2**70).map(str),
        )
    if isinstance(kind, click.types.FloatParamType):
        return st.one_of(st.sampled_from(FLOATS), st.floats(-1e6, 1e6).map(repr))
    if isinstance(kind, click.Path | click.File):
        return st.sampled_from(["missing.jsonl", "", ".", "adir", "adir/", "no/such/x"])
    return text_values(files)


@st.composite
def argv_for(draw: Any, target: Surface, files: list[str]) -> list[str]:
    """Random root options, the command path, and a random subset of its parameters."""
    args: list[str] = []
    if not draw(st.integers(0, 3)):
        args += draw(
            st.sampled_from(
                [["-o", "json"], ["-o", "yaml"], ["--no-color"], ["-C", "nope"], ["-o", "xml"]]
            )
        )
    args += list(target.path)
    parts: list[list[str]] = []
    for param in target.command.params:
        if isinstance(param, click.Option):
            if param.hidden or param.name in ("help",):
                continue
            if not param.required and draw(st.integers(0, 2)):
                continue
            flag = draw(st.sampled_from(param.opts + param.secondary_opts))
            if param.is_flag or param.count:
                parts.append([flag])
                continue
            repeat = draw(st.integers(1, 2)) if param.multiple else 1
            for _ in range(repeat):
                parts.append([flag, draw(value_for(param, files))])
        elif isinstance(param, click.Argument):
            if not param.required and not draw(st.booleans()):
                continue
            parts.append([draw(value_for(param, files))])
    if draw(st.integers(0, 19)) == 0:
        parts.append([draw(st.sampled_from(["--no-such-option", "extra-arg", "--help"]))])
    order = draw(st.permutations(range(len(parts))))
    for i in order:
        args += parts[i]
    if target.path == ("lag",) and ("--watch" in args or "-w" in args):
        args += ["--count", "1"]  # without a terminal, --watch stops after N snapshots
    return args


class Hang(BaseException):
    """Raised by the alarm: not an Exception, so qctl's own handlers cannot swallow it."""


@contextmanager
def bounded(seconds: float = CASE_SECONDS) -> Iterator[None]:
    def alarm(signum: int, frame: Any) -> None:
        raise Hang(f"still running after {seconds}s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


#: Lines a failing run may print to stderr besides warnings and the error itself: the
#: summary of a dry run, and a job's start/summary lines and failure reasons.
INFO_PREFIXES = ("qctl: warning: ",)
SUMMARY = re.compile(
    r"^(dry run: \d+ |job [\w.-]+: (started|moved|aborted|resumed)|qctl: \d+ failed: )"
)


#: Commands that report each backend of the context on its own: one error line per
#: failing backend (the context has two), the last one deciding the exit code.
MULTI_BACKEND = (("cluster", "info"), ("dlq", "list"), ("lag",))

#: Compiler-style diagnostics the topology commands list before their summary error.
DIAGNOSTIC = re.compile(r"^\S.*:\d+:\d+: (error|warning): \S")


def check_run(run: Run, allowed: set[int], path: tuple[str, ...] = ()) -> None:
    """A documented exit code, no traceback, and exactly one ``qctl: error:`` line."""
    everything = run.stdout + run.stderr
    context = f"qctl {run.args!r} -> {run.code}\n{run.stderr[-2000:]}"
    assert run.code in allowed, context
    assert "Traceback" not in everything, context
    assert "rerun with -v for the traceback and report it" not in everything, context
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("qctl: error: ")]
    if run.code == 0:
        assert not errors, context
        return
    if run.code == 2 and run.stderr.startswith("Usage: "):
        return  # a group called without a subcommand prints its help (click's convention)
    most = 2 if path in MULTI_BACKEND else 1
    assert 1 <= len(errors) <= most, context
    assert lines[-1] == errors[-1], context
    for line in lines[: -len(errors)]:
        known = line.startswith(INFO_PREFIXES) or DIAGNOSTIC.match(line) or SUMMARY.match(line)
        assert known, context
    assert lines[-len(errors) :] == errors, context


def write_fixture_files(root: Path) -> list[str]:
    """Files the fuzzed options may name, in the case's working directory."""
    (root / "adir").mkdir(exist_ok=True)
    (root / "empty.jsonl").write_text("")
    (root / "bad.jsonl").write_text('{"value": \n')
    (root / "good.jsonl").write_text('{"key": null, "value": "v", "headers": []}\n')
    (root / "bad.yaml").write_text("topics: [\n")
    example = Path(__file__).resolve().parents[2] / "examples" / "order-pipeline.yaml"
    (root / "topology.yaml").write_text(example.read_text())
    (root / "offsets.csv").write_text("topic,partition,offset\nfuzz-t,0,x\n")
    return ["empty.jsonl", "bad.jsonl", "good.jsonl", "bad.yaml", "topology.yaml", "offsets.csv"]
