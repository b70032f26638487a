"""How every `galley` command turns a known failure into one line (`Error: ...`, exit 1)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click
from botocore.exceptions import BotoCoreError, ClientError
from celery.exceptions import BackendError
from kombu.exceptions import OperationalError

from runner.errors import GalleyError


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Known failures become one-line errors (exit 1) instead of tracebacks."""
    try:
        yield
    except GalleyError as error:
        raise click.ClickException(str(error)) from None
    except BackendError as error:
        # Celery's backend gave up after its retries; what it met is the chained cause
        cause = error.__cause__
        why = f" ({type(cause).__name__}: {' '.join(str(cause).split())})" if cause else ""
        raise click.ClickException(f"the results backend: {error.args[0]}{why}") from None
    except (BotoCoreError, ClientError, OperationalError, OSError, ValueError) as error:
        # Galley's own errors are GalleyErrors; these come from libraries reading what the user
        # gave them (botocore and AWS_MAX_ATTEMPTS=abc, AWS_RETRY_MODE=bogus, ...) or from AWS
        # itself (a queue that does not exist, an endpoint that does not answer, through
        # Celery's kombu), or the machine (a .galley/ that cannot be written): one line too.
        text = " ".join(str(error).split())
        raise click.ClickException(f"{type(error).__name__}: {text}") from None
