"""Walk qctl's click tree into plain data for the completion and man-page generators.

Only built-in commands are walked: plugin commands differ per installation, so the
generated completion scripts ask ``qctl`` itself about anything they do not know.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import click


@dataclass
class OptionSpec:
    names: list[str]
    takes_value: bool
    choices: list[str]
    dynamic: bool
    path_like: bool
    metavar: str
    help: str
    multiple: bool


@dataclass
class ArgumentSpec:
    name: str
    choices: list[str]
    dynamic: bool
    path_like: bool
    required: bool
    multiple: bool


@dataclass
class CommandSpec:
    path: list[str]
    help: str
    short_help: str
    usage: str
    subcommands: dict[str, str] = field(default_factory=dict)
    options: list[OptionSpec] = field(default_factory=list)
    arguments: list[ArgumentSpec] = field(default_factory=list)

    @property
    def key(self) -> str:
        return " ".join(self.path)


def builtin_root() -> click.Group:
    from qctl.cli import cli

    return cli


def walk(
    cmd: click.Command | None = None,
    path: list[str] | None = None,
    ctx: click.Context | None = None,
) -> list[CommandSpec]:
    """Every built-in command, depth first, root first."""
    from qctl.cli import BUILTIN_COMMANDS

    cmd = cmd or builtin_root()
    path = path or []
    ctx = click.Context(
        cmd, info_name=" ".join(["qctl", *path]), parent=ctx, **cmd.context_settings
    )
    spec = CommandSpec(
        path=list(path),
        help=cmd.help or "",
        short_help=cmd.get_short_help_str(limit=200),
        usage=" ".join(cmd.collect_usage_pieces(ctx)),
    )
    for param in cmd.get_params(ctx):
        if isinstance(param, click.Option):
            if param.hidden:
                continue
            spec.options.append(_option(param))
        elif isinstance(param, click.Argument):
            spec.arguments.append(_argument(param))
    specs = [spec]
    if isinstance(cmd, click.Group):
        names = sorted(BUILTIN_COMMANDS) if not path else cmd.list_commands(ctx)
        for name in names:
            sub = cmd.get_command(ctx, name)
            if sub is None or sub.hidden:
                continue
            spec.subcommands[name] = sub.get_short_help_str(limit=200)
            specs.extend(walk(sub, [*path, name], ctx))
    return specs


def _option(param: click.Option) -> OptionSpec:
    names = [*param.opts, *param.secondary_opts]
    takes_value = not param.is_flag and not param.count
    return OptionSpec(
        names=names,
        takes_value=takes_value,
        choices=list(param.type.choices) if isinstance(param.type, click.Choice) else [],
        dynamic=param._custom_shell_complete is not None,
        path_like=isinstance(param.type, (click.Path, click.File)),
        metavar=param.make_metavar(click.Context(click.Command("x"))) if takes_value else "",
        help=" ".join((param.help or "").split()),
        multiple=param.multiple,
    )


def _argument(param: click.Argument) -> ArgumentSpec:
    return ArgumentSpec(
        name=param.human_readable_name,
        choices=list(param.type.choices) if isinstance(param.type, click.Choice) else [],
        dynamic=param._custom_shell_complete is not None,
        path_like=isinstance(param.type, (click.Path, click.File)),
        required=param.required,
        multiple=param.nargs == -1,
    )
