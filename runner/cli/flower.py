"""``celery flower`` on a Galley app, when Flower is not installed: one line saying what to use.

Registered as a ``celery.commands`` entry point (pyproject.toml), Celery's own way to add a
command. Without it ``celery flower`` says only "No such command". If Flower is installed too,
which ``flower`` command the celery CLI takes depends on the order of entry points; Flower's own
then starts and shows no workers (it needs events and broadcast, which SQS does not have).
"""

from __future__ import annotations

from typing import Any

import click


@click.command(
    "flower",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,
)
@click.pass_context
def flower(ctx: click.Context, **_: Any) -> None:
    """Flower needs broadcast and events; on a Galley app, see `galley status`."""
    app = getattr(ctx.obj, "app", None)
    if not hasattr(app, "galley_settings"):  # another app: Celery's own answer
        raise click.UsageError("No such command 'flower' (Flower is not installed).")
    from runner.runtime.remote import flower_refusal

    raise flower_refusal()
