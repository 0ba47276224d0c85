"""The qctl process ends without the interpreter's teardown, and loses nothing by it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent("""
    import atexit, sys, threading, time
    out = sys.argv[1]
    def note(what):
        with open(out, "a") as f:
            f.write(what + "\\n")
    class Teardown:
        def __del__(self, _open=open, _out=out):
            with _open(_out, "a") as f:  # what it needs, bound: modules are going away
                f.write("teardown\\n")
    keep = Teardown()
    unflushed = open(out + ".buffered", "w")
    unflushed.write("buffered")
    atexit.register(note, "atexit")
    def late():
        time.sleep(0.3)
        note("thread")
    threading.Thread(target=late).start()
    if sys.argv[2] == "consumer":
        import confluent_kafka
        consumer = confluent_kafka.Consumer({"group.id": "g", "bootstrap.servers": "x:1"})
    import qctl.cli
    sys.argv = ["qctl", *sys.argv[3:]]
    qctl.cli.main()
""")


def run(tmp_path: Path, mode: str, *args: str) -> tuple[int, list[str], str, str]:
    out = tmp_path / "notes"
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(out), mode, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    buffered = Path(f"{out}.buffered").read_text()
    return proc.returncode, out.read_text().split(), buffered, proc.stdout


@pytest.mark.parametrize(("args", "code"), [(("--help",), 0), (("no-such-command",), 2)])
def test_the_exit_skips_the_teardown_but_not_threads_atexit_or_buffers(
    tmp_path: Path, args: tuple[str, ...], code: int
) -> None:
    returned, notes, buffered, stdout = run(tmp_path, "plain", *args)
    assert returned == code
    assert notes == ["thread", "atexit"]  # no "teardown": the process just ended
    assert buffered == "buffered"
    assert ("Usage:" in stdout) is (code == 0)


def test_an_open_kafka_consumer_gets_the_normal_exit(tmp_path: Path) -> None:
    """Freeing a consumer leaves its group; an ended process would not."""
    returned, notes, buffered, _ = run(tmp_path, "consumer", "--help")
    assert returned == 0
    assert notes == ["thread", "atexit", "teardown"]
    assert buffered == "buffered"


def test_the_whole_output_reaches_a_pipe() -> None:
    """Everything written to stdout before the exit arrives, also when it is large."""
    script = textwrap.dedent("""
        import sys, click, qctl.cli
        @qctl.cli.cli.command("spill")
        def spill():
            for i in range(200_000):
                click.echo(f"line {i}")
        sys.argv = ["qctl", "spill"]
        qctl.cli.main()
    """)
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 200_000 and lines[-1] == "line 199999"
