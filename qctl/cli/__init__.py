"""The ``qctl`` command: root options, lazy subcommands, and error handling.

Subcommands are imported only when invoked (click's lazy-loading pattern), so
``qctl --help`` and shell completion never import confluent_kafka, pika, httpx or
textual. Every error leaves as one ``qctl: error:`` line and a documented exit code;
``-v`` adds the traceback.
"""

from __future__ import annotations

import importlib
import logging
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from qctl import __version__
from qctl.cli.app import App
from qctl.config import SECRETS
from qctl.errors import ExitCode, QctlError
from qctl.errors import UsageError as QctlUsageError

#: Built-in command groups: name -> "module:attribute", imported on first use.
BUILTIN_COMMANDS: dict[str, str] = {
    "cluster": "qctl.cli.cluster:cluster",
    "consume": "qctl.cli.consume:consume",
    "context": "qctl.cli.context:context",
    "dlq": "qctl.cli.dlq:dlq",
    "lag": "qctl.cli.lag:lag",
    "offsets": "qctl.cli.offsets:offsets",
    "plugins": "qctl.cli.plugins:plugins",
    "produce": "qctl.cli.produce:produce",
    "replay": "qctl.cli.replay:replay",
    "topology": "qctl.cli.topology:topology",
}

EXIT_CODES_HELP = """\b
Exit codes:
  0    success
  1    the operation failed
  2    usage error or invalid input file
  3    cluster unreachable, authentication failed, or timed out
  4    partial failure: some items succeeded, some failed
  5    drift or pending changes (only with --detailed-exitcode)
  6    a threshold was exceeded
  130  interrupted; state left consistent and resumable"""


class LazyGroup(click.Group):
    """A group whose built-in subcommands and plugin commands load on first use."""

    def __init__(
        self, *args: Any, lazy_subcommands: dict[str, str] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_subcommands = lazy_subcommands or {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = set(super().list_commands(ctx)) | set(self.lazy_subcommands)
        if self.lazy_subcommands is BUILTIN_COMMANDS:
            from qctl.plugins import command_names

            names |= set(command_names())
        return sorted(names)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy_subcommands:
            module_name, attr = self.lazy_subcommands[cmd_name].split(":")
            cmd: click.Command = getattr(importlib.import_module(module_name), attr)
            return cmd
        found = super().get_command(ctx, cmd_name)
        if found is not None or self.lazy_subcommands is not BUILTIN_COMMANDS:
            return found
        from qctl.plugins import load_command

        return load_command(cmd_name)


def complete_context(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Context names from the config file, for shell completion."""
    from qctl.config import ConfigFile

    try:
        config_path = ctx.params.get("config_path")
        names = ConfigFile.load(Path(config_path) if config_path else None).names()
    except Exception:  # completion must never print errors into the user's prompt
        return []
    return [n for n in names if n.startswith(incomplete)]


@click.group(
    cls=LazyGroup,
    lazy_subcommands=BUILTIN_COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=EXIT_CODES_HELP,
)
@click.option(
    "--context",
    "-C",
    "context_name",
    metavar="NAME",
    envvar="QCTL_CONTEXT",
    shell_complete=complete_context,
    help="Context (cluster profile) to use; default: the config's current context.",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="QCTL_CONFIG",
    metavar="PATH",
    help="Config file; default: $XDG_CONFIG_HOME/qctl/config.yaml.",
)
@click.option(
    "-o",
    "--output",
    "output_format",
    type=click.Choice(["table", "json", "yaml"]),
    default=None,
    help="Output format for commands that return data.",
)
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="Log diagnostics to stderr; -v also shows tracebacks, -vv adds client-library debug logs.",
)
@click.option(
    "--no-color", is_flag=True, envvar="NO_COLOR", help="Never colour output (also: NO_COLOR=1)."
)
@click.version_option(
    __version__, "--version", "-V", prog_name="qctl", message="%(prog)s %(version)s"
)
@click.pass_context
def cli(
    ctx: click.Context,
    context_name: str | None,
    config_path: Path | None,
    output_format: str | None,
    verbose: int,
    no_color: bool,
) -> None:
    """qctl: provision, inspect and operate Kafka and RabbitMQ clusters safely.

    Topology as code, test events, offset replay, dead-letter redrive and live consumer
    lag, for both brokers with one syntax. Run `qctl COMMAND --help` for details.
    """
    ctx.obj = App(
        context_name=context_name,
        config_path=config_path,
        output_format=output_format,
        verbose=verbose,
        no_color=bool(no_color),
    )
    _setup_logging(verbose)
    ctx.call_on_close(ctx.obj.close)


class _ScrubSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = SECRETS.scrub(record.getMessage())
        record.args = None
        return True


def _setup_logging(verbose: int) -> None:
    root = logging.getLogger()
    if verbose and not any(getattr(h, "_qctl", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler._qctl = True  # type: ignore[attr-defined]
        handler.addFilter(_ScrubSecrets())
        handler.setFormatter(logging.Formatter("qctl: %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    logging.getLogger("qctl").setLevel(logging.DEBUG if verbose else logging.WARNING)
    # Client libraries are chatty; their debug logs only with -vv.
    for name in ("pika", "httpx", "httpcore", "confluent_kafka", "qctl.librdkafka"):
        logging.getLogger(name).setLevel(logging.DEBUG if verbose >= 2 else logging.CRITICAL)


def _verbose_requested(args: Sequence[str]) -> bool:
    for arg in args:
        if arg == "--":
            break
        if arg == "--verbose" or (arg.startswith("-v") and set(arg[1:]) == {"v"}):
            return True
    return False


def error_line(what: str) -> str:
    """The one error line: secrets scrubbed, and no character that would break the line
    (newlines, or controls such as \\x1e that str.splitlines() also splits on) left raw."""
    return SECRETS.scrub(f"qctl: error: {one_line(what)}")


def one_line(text: str) -> str:
    if text.isprintable():
        return text
    return "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point: run the CLI and turn every failure into an exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    verbose = _verbose_requested(args)
    code: int = ExitCode.OK
    try:
        _check_utf8(args)
        result = cli.main(args=args, prog_name="qctl", standalone_mode=False)
        if isinstance(result, int):
            code = result
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.exceptions.Abort:
        click.echo(error_line("aborted — nothing was changed"), err=True)
        code = ExitCode.FAILED
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc), err=True)
        code = ExitCode.USAGE
    except click.ClickException as exc:
        hint = ""
        usage_ctx = getattr(exc, "ctx", None)
        if usage_ctx is not None:
            hint = f" — see `{usage_ctx.command_path} --help`"
        click.echo(error_line(exc.format_message() + hint), err=True)
        code = exc.exit_code
    except QctlError as exc:
        if verbose:
            traceback.print_exc()
        click.echo(error_line(str(exc)), err=True)
        code = exc.exit_code
    except KeyboardInterrupt:
        click.echo(error_line("interrupted"), err=True)
        code = ExitCode.INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`qctl ... | head`): not an error worth a message.
        _silence_stdout()
        code = ExitCode.OK
    except Exception as exc:
        if verbose:
            traceback.print_exc()
        click.echo(
            error_line(
                f"unexpected {type(exc).__name__}: {exc} — rerun with -v for the "
                "traceback and report it"
            ),
            err=True,
        )
        code = ExitCode.FAILED
    _flush()
    if argv is None:  # the process's own entry point: nothing runs after it
        from qctl.exiting import end_process

        end_process(code)
    sys.exit(code)


def _check_utf8(args: Sequence[str]) -> None:
    """Refuse arguments that are not UTF-8 up front (Python keeps such bytes as lone
    surrogates, which fail later wherever the text is encoded)."""
    for position, arg in enumerate(args, 1):
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            shown = arg.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            raise QctlUsageError(
                f"argument {position} ({shown!r}) is not valid UTF-8",
                "pass binary message data with --file instead",
            ) from None


def _flush() -> None:
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()


def _silence_stdout() -> None:
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
