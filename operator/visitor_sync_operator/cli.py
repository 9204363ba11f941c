"""``visitor-sync``: the importer's commands plus ``operator``.

The command lives here, not in the importer, so that the importer never imports
the operator (the operator depends on the importer's contract, not the reverse).
"""

from __future__ import annotations

import click

from visitor_sync.cli import main


@main.command()
@click.option("--namespace", "namespaces", multiple=True,
              help="Watch this namespace (repeatable; glob patterns allowed). Default: "
                   "$VISITOR_SYNC_NAMESPACES, else the whole cluster.")
@click.option("--metrics-port", type=int, help="Port of /metrics (default 8080).")
@click.option("--health-port", type=int, help="Port of the liveness probe /healthz "
              "(default 8081).")
def operator(namespaces: tuple[str, ...], metrics_port: int | None,
             health_port: int | None) -> None:
    """Run the Kubernetes operator (settings: VISITOR_SYNC_* variables, docs/configuration.md)."""
    # Imported here: kopf, the Kubernetes client and pydantic-settings are slow to
    # import and the importer's own commands (the hourly Job) do not need them.
    from pydantic import ValidationError

    from visitor_sync_operator.main import run
    from visitor_sync_operator.settings import OperatorSettings

    overrides = {"namespaces": list(namespaces) or None, "metrics_port": metrics_port,
                 "health_port": health_port}
    try:
        settings = OperatorSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as error:
        raise click.UsageError(f"invalid operator settings: {error}") from error
    run(settings)

