"""``qctl context``: list, show, switch and edit contexts (cluster profiles)."""

from __future__ import annotations

from typing import Any

import click

from qctl.cli import complete_context
from qctl.cli.app import App, pass_app
from qctl.cli.options import output_option
from qctl.config import (
    Context,
    is_secret_key,
    parse_assignments,
    redact_url,
    url_password,
    validate_context_name,
)
from qctl.output import key_value_table, table


@click.group()
def context() -> None:
    """List, show, switch and edit contexts (cluster profiles).

    A context names a Kafka and a RabbitMQ cluster plus their credentials. The config
    file is $QCTL_CONFIG or $XDG_CONFIG_HOME/qctl/config.yaml; without one, qctl uses
    the built-in `local` context (the brokers `dev/brokers up` starts). Values may use
    ${VAR} to read secrets from the environment; KEY_file and KEY_command settings read
    a secret from a file or a command (pass, vault, a keychain) when connecting.
    """


@context.command("list")
@click.option("-q", "--quiet", is_flag=True, help="Print only the context names.")
@output_option()
@pass_app
def list_contexts(app: App, quiet: bool, output: str | None) -> None:
    """List contexts; the current one is marked with *."""
    config = app.config()
    current = config.selected_name(app.context_name, _environ())
    if quiet:
        for name in config.names():
            click.echo(name)
        return
    rows = []
    for name in config.names():
        ctx = config.get(name)
        rows.append(
            {
                "name": name,
                "current": name == current,
                "kafka": ctx.backends.get("kafka", {}).get("bootstrap_servers"),
                "rabbitmq": _safe_url(ctx.backends.get("rabbitmq", {}).get("url")),
                "other_backends": sorted(set(ctx.backends) - {"kafka", "rabbitmq"}),
                "protected": ctx.protected,
                "description": ctx.description,
            }
        )

    def render(data: list[dict[str, Any]]) -> str:
        shown = [dict(r, current="*" if r["current"] else "") for r in data]
        return table(
            shown,
            [
                ("current", "CURRENT"),
                ("name", "NAME"),
                ("kafka", "KAFKA"),
                ("rabbitmq", "RABBITMQ"),
                ("protected", "PROTECTED"),
            ],
        )

    app.output(output).emit(rows, render)


@context.command("show")
@click.argument("name", required=False, shell_complete=complete_context)
@output_option()
@pass_app
def show_context(app: App, name: str | None, output: str | None) -> None:
    """Show a context (default: the current one) as qctl will use it, secrets redacted.

    ${VAR} references are expanded and environment overrides (QCTL_KAFKA_BOOTSTRAP,
    QCTL_RABBITMQ_URL, QCTL_RABBITMQ_MANAGEMENT_URL) applied, so this is exactly what
    commands connect to.
    """
    resolved = app.config().resolve(name or app.context_name)
    data = resolved.redacted()

    def render(d: dict[str, Any]) -> str:
        pairs: list[tuple[str, Any]] = [
            ("name", d["name"]),
            ("source", d["source"]),
            ("protected", d["protected"]),
        ]
        for backend, settings in d["backends"].items():
            pairs.extend((f"{backend}.{k}", v) for k, v in settings.items())
        pairs.extend(("override", o) for o in d["overrides"])
        return key_value_table(pairs)

    app.output(output).emit(data, render)


@context.command("use")
@click.argument("name", shell_complete=complete_context)
@pass_app
def use_context(app: App, name: str) -> None:
    """Make NAME the current context (written to the config file)."""
    config = app.config()
    config.get(name)  # fails with the list of known contexts
    config.current_context = name
    config.save()
    app.info(f"Switched to context {name!r} ({config.path}).")


@context.command("set")
@click.argument("name")
@click.option("--kafka-bootstrap", metavar="HOST:PORT[,...]", help="Kafka bootstrap servers.")
@click.option(
    "--kafka-property",
    "kafka_properties",
    multiple=True,
    metavar="KEY=VALUE",
    help="Any librdkafka property, e.g. security.protocol=SASL_SSL (repeatable). "
    "An empty value removes the property.",
)
@click.option(
    "--rabbitmq-url", metavar="URL", help="amqp:// or amqps:// URL; the path is the vhost."
)
@click.option("--management-url", metavar="URL", help="RabbitMQ management API base URL.")
@click.option(
    "--rabbitmq-property",
    "rabbitmq_properties",
    multiple=True,
    metavar="KEY=VALUE",
    help="RabbitMQ setting, e.g. ca_file=/path/ca.pem, insecure=true (repeatable).",
)
@click.option(
    "--protected/--unprotected",
    default=None,
    help="Protected contexts make mutating commands ask for the context name.",
)
@click.option("--description", help="A note shown by `context list`.")
@click.option("--use", "make_current", is_flag=True, help="Also make it the current context.")
@pass_app
def set_context(
    app: App,
    name: str,
    kafka_bootstrap: str | None,
    kafka_properties: tuple[str, ...],
    rabbitmq_url: str | None,
    management_url: str | None,
    rabbitmq_properties: tuple[str, ...],
    protected: bool | None,
    description: str | None,
    make_current: bool,
) -> None:
    """Create or update context NAME.

    Values are stored as given: write secrets as ${VAR} references, or as KEY_file /
    KEY_command sources read only when connecting, so the file never holds them, e.g.
    --kafka-property 'sasl.password=${KAFKA_PASSWORD}' or --rabbitmq-property
    'password_command=pass show rabbitmq/prod' (see docs/secrets.md).
    """
    validate_context_name(name)
    config = app.config()
    ctx = config.contexts.get(name) or Context(name=name)
    kafka_updates = parse_assignments(kafka_properties, "--kafka-property")
    if kafka_bootstrap:
        kafka_updates["bootstrap_servers"] = kafka_bootstrap
    rabbit_updates = parse_assignments(rabbitmq_properties, "--rabbitmq-property")
    if rabbitmq_url:
        rabbit_updates["url"] = rabbitmq_url
    if management_url:
        rabbit_updates["management_url"] = management_url
    for backend, updates in (("kafka", kafka_updates), ("rabbitmq", rabbit_updates)):
        if not updates:
            continue
        section = ctx.backends.setdefault(backend, {})
        for key, value in updates.items():
            _warn_literal_secret(app, backend, key, value)
            if value == "":
                section.pop(key, None)
            else:
                section[key] = _coerce(value)
    if protected is not None:
        ctx.protected = protected
    if description is not None:
        ctx.description = description or None
    config.contexts[name] = ctx
    if make_current or config.current_context is None:
        config.current_context = name
    config.save()
    app.info(f"Context {name!r} saved to {config.path}.")


@context.command("delete")
@click.argument("name", shell_complete=complete_context)
@pass_app
def delete_context(app: App, name: str) -> None:
    """Remove context NAME from the config file."""
    config = app.config()
    if name not in config.contexts:
        config.get(name)  # raises the not-found error with the known names
        raise click.UsageError(f"the built-in context {name!r} cannot be deleted")
    del config.contexts[name]
    if config.current_context == name:
        config.current_context = None
    config.save()
    app.info(f"Context {name!r} deleted.")


def _safe_url(url: Any) -> Any:
    return redact_url(url) if isinstance(url, str) else url


def _warn_literal_secret(app: App, backend: str, key: str, value: str) -> None:
    literal = (is_secret_key(key) and value and "${" not in value) or (
        "://" in value
        and url_password(value) not in (None, "", "guest")
        and "${" not in (url_password(value) or "")
    )
    if literal:
        app.warn(
            f"{backend}.{key} holds a literal secret; prefer a ${{VAR}} reference so the "
            "config file does not store it"
        )


def _coerce(value: str) -> Any:
    """``true``/``false`` and integers as YAML would read them; everything else as text."""
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if value.isdigit() and not value.startswith("0"):
        return int(value)
    return value


def _environ() -> dict[str, str]:
    import os

    return dict(os.environ)
