"""What a source's failure means for the runner: try again soon, or stop until someone fixes it."""

from __future__ import annotations

import socket


class SourceError(Exception):
    """A source could not be read. The message names the source problem and what to do."""


class RetryableError(SourceError):
    """A passing failure (timeout, rate limit, server error): the runner retries with backoff.

    ``retry_after`` is the delay in seconds the server asked for (HTTP ``Retry-After``), if any.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class FatalError(SourceError):
    """A failure retrying cannot fix (bad credentials, 401, bad configuration)."""


class SourceConfigError(ValueError):
    """The sources file is wrong; the message names the source and the bad option."""


RETRYABLE_BUILTINS = (TimeoutError, ConnectionError, socket.timeout, socket.gaierror)


def is_retryable(exc: BaseException) -> bool:
    """Whether the runner should try ``exc``'s operation again after a backoff."""
    if isinstance(exc, RetryableError):
        return True
    if isinstance(exc, SourceError):
        return False
    return isinstance(exc, RETRYABLE_BUILTINS)
