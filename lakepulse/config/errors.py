"""What the configuration layer refuses, each with the HTTP status the API answers (the message is ours only)."""

from __future__ import annotations

from typing import ClassVar


class ConfigError(ValueError):
    """A configuration request the API refuses: 400, with a message that names the problem."""

    status_code: ClassVar[int] = 400


class NotFound(ConfigError):
    """No such object for this tenant: 404 (another tenant's objects are not found either, so an id reveals
    nothing about who owns it)."""

    status_code = 404


class LimitReached(ConfigError):
    """The tenant already has as many objects of a kind as it may: 409."""

    status_code = 409


class ConfigUnavailable(ConfigError):
    """The configuration database did not answer: 503 with Retry-After (no engine text)."""

    status_code = 503

    def __init__(self, message: str = "the configuration database is not available; retry shortly") -> None:
        super().__init__(message)
