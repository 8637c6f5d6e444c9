"""Kubernetes resource quantities (``120Gi``, ``500m``, ``1e3``) as Decimals."""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

_SUFFIXES = {
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
_RE = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)([KMGTPE]i|[numkMGTPE]?)$")


def parse_quantity(value: str | int | float) -> Decimal:
    """Parse a quantity; raises ValueError naming the bad value."""
    text = str(value).strip()
    match = _RE.match(text)
    if not match:
        raise ValueError(f"invalid resource quantity {value!r} (expected e.g. '120Gi', '4', '500m')")
    try:
        return Decimal(match.group(1)) * _SUFFIXES[match.group(2)]
    except InvalidOperation as exc:  # pragma: no cover - regex already guards
        raise ValueError(f"invalid resource quantity {value!r}") from exc


def to_gib_ceil(value: str) -> int:
    """Bytes quantity -> whole GiB, rounded up (AKS takes the OS disk size in GB)."""
    return math.ceil(parse_quantity(value) / _SUFFIXES["Gi"])


def is_positive(value: str | None) -> bool:
    if value is None:
        return False
    try:
        return parse_quantity(value) > 0
    except ValueError:
        return False
