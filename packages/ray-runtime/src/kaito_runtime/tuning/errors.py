"""Errors of the tuning runtime. Each message says what failed, where, and how to fix it."""

from __future__ import annotations


class TuningError(RuntimeError):
    """A tuning run failed; the message is meant for the user (it ends up in the Workspace status)."""


class DataError(TuningError):
    """The training data could not be fetched, read or used."""


class DownloadError(DataError):
    """A URL could not be downloaded. `url` is the (redacted) URL, `reason` says why."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"download {url}: {reason}")
