"""Timestamps in the API's formats."""

from __future__ import annotations

import datetime as dt


def now() -> str:
    """RFC 3339 with seconds, like metav1.Time."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    """metav1.MicroTime."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
