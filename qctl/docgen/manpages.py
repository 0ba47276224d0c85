"""Generate troff man pages from qctl's click tree: ``qctl(1)`` and one per command group.

Hand-written rather than click-man because qctl(1) needs sections click does not model
(EXIT STATUS, ENVIRONMENT, FILES) and one page per group reads better than one per leaf.
"""

from __future__ import annotations

from qctl import __version__
from qctl.docgen.tree import CommandSpec, OptionSpec, walk

EXIT_STATUS = [
    ("0", "success"),
    ("1", "the operation failed"),
    ("2", "usage error or invalid input file"),
    ("3", "cluster unreachable, authentication failed, or timed out"),
    ("4", "partial failure: some items succeeded, some failed (details on stderr or in JSON)"),
    ("5", "drift or pending changes (only with --detailed-exitcode)"),
    ("6", "a threshold was exceeded (e.g. qctl lag --threshold)"),
    ("130", "interrupted; state left consistent and resumable"),
]

ENVIRONMENT = [
    ("QCTL_CONFIG", "Path of the config file."),
    ("QCTL_CONTEXT", "Context to use (like --context)."),
    ("QCTL_KAFKA_BOOTSTRAP", "Overrides kafka.bootstrap_servers of the selected context."),
    ("QCTL_RABBITMQ_URL", "Overrides rabbitmq.url of the selected context."),
    ("QCTL_RABBITMQ_MANAGEMENT_URL", "Overrides rabbitmq.management_url of the selected context."),
    ("QCTL_TIMEOUT", "Default for --timeout, in seconds."),
    ("QCTL_STATE_DIR", "Where qctl keeps state between runs (snapshots, history, jobs)."),
    ("NO_COLOR", "When set, output is never coloured."),
    ("XDG_CONFIG_HOME", "Base of the default config path."),
]


def _esc(text: str) -> str:
    text = text.replace("\\", "\\e").replace("-", "\\-")
    lines = []
    for line in text.split("\n"):
        lines.append("\\&" + line if line.startswith((".", "'")) else line)
    return "\n".join(lines)


def _paragraphs(help_text: str) -> str:
    """click help text to troff: blank lines separate paragraphs; \\b keeps line breaks."""
    out = []
    for raw in help_text.strip().split("\n\n"):
        block = raw.strip("\n")
        if not block:
            continue
        if block.lstrip().startswith("\b"):
            body = block.lstrip()[1:].strip("\n")
            out.append(".PP\n.nf\n" + _esc(_dedent(body)) + "\n.fi")
        else:
            out.append(".PP\n" + _esc(" ".join(block.split())))
    return "\n".join(out)


def _dedent(text: str) -> str:
    import textwrap

    return textwrap.dedent(text)


def _option(opt: OptionSpec) -> str:
    names = ", ".join(f"\\fB{_esc(n)}\\fR" for n in opt.names)
    if opt.takes_value:
        names += f" \\fI{_esc(opt.metavar)}\\fR"
    return f".TP\n{names}\n{_esc(opt.help) or ''}".rstrip()


def _title(name: str, summary: str) -> str:
    return (
        f'.TH {name.upper()} 1 "" "qctl {__version__}" "qctl manual"\n'
        f".SH NAME\n{_esc(name)} \\- {_esc(summary)}"
    )


def _synopsis(spec: CommandSpec) -> str:
    return f".SH SYNOPSIS\n.B {_esc(' '.join(['qctl', *spec.path]))}\n{_esc(spec.usage)}"


def root_page(specs: list[CommandSpec]) -> str:
    root = specs[0]
    parts = [
        _title("qctl", "operate Kafka and RabbitMQ clusters safely"),
        _synopsis(root),
        ".SH DESCRIPTION\n" + _paragraphs(root.help),
        ".SH OPTIONS\n" + "\n".join(_option(o) for o in root.options),
        ".SH COMMANDS\n"
        + "\n".join(
            f".TP\n\\fBqctl\\-{_esc(name)}\\fR(1)\n{_esc(summary)}"
            for name, summary in root.subcommands.items()
        ),
        ".SH EXIT STATUS\n"
        + "\n".join(f".TP\n.B {code}\n{_esc(text)}" for code, text in EXIT_STATUS),
        ".SH ENVIRONMENT\n"
        + "\n".join(f".TP\n.B {name}\n{_esc(text)}" for name, text in ENVIRONMENT),
        ".SH FILES\n.TP\n.I ~/.config/qctl/config.yaml\n"
        + _esc(
            "Contexts (cluster profiles); see qctl-context(1). Kept readable by its owner only."
        ),
        ".SH SEE ALSO\n" + ", ".join(f"\\fBqctl\\-{_esc(n)}\\fR(1)" for n in root.subcommands),
    ]
    return "\n".join(parts) + "\n"


def group_page(group: CommandSpec, specs: list[CommandSpec]) -> str:
    name = "qctl-" + "-".join(group.path)
    members = [s for s in specs if s.path[: len(group.path)] == group.path and s is not group]
    parts = [
        _title(name, group.short_help.rstrip(".")),
        _synopsis(group),
        ".SH DESCRIPTION\n" + _paragraphs(group.help),
    ]
    if group.options and any(o.names != ["-h", "--help"] for o in group.options):
        parts.append(".SH OPTIONS\n" + "\n".join(_option(o) for o in group.options))
    if members:
        parts.append(".SH COMMANDS")
        for member in members:
            parts.append(f'.SS "{_esc(" ".join(["qctl", *member.path]))}"')
            parts.append(f".B {_esc(' '.join(['qctl', *member.path]))}\n{_esc(member.usage)}")
            parts.append(_paragraphs(member.help))
            options = [o for o in member.options if o.names != ["-h", "--help"]]
            if options:
                parts.append(".PP\nOptions:\n.RS")
                parts.extend(_option(o) for o in options)
                parts.append(".RE")
    parts.append(".SH SEE ALSO\n\\fBqctl\\fR(1)")
    return "\n".join(parts) + "\n"


def pages() -> dict[str, str]:
    """File name under man/ -> page text."""
    specs = walk()
    result = {"qctl.1": root_page(specs)}
    for spec in specs:
        if len(spec.path) == 1:
            result[f"qctl-{spec.path[0]}.1"] = group_page(spec, specs)
    return result
