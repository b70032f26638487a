"""How every `galley` command turns a known failure into one line (`Error: ...`, exit 1)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click
from botocore.exceptions import BotoCoreError

from runner.errors import GalleyError


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Known failures become one-line errors (exit 1) instead of tracebacks."""
    try:
        yield
    except GalleyError as error:
        raise click.ClickException(str(error)) from None
    except (BotoCoreError, ValueError) as error:
        # Galley's own errors are GalleyErrors; these come from libraries reading what the user
        # gave them (botocore and AWS_MAX_ATTEMPTS=abc, AWS_RETRY_MODE=bogus, ...): one line too.
        raise click.ClickException(f"{type(error).__name__}: {error}") from None
