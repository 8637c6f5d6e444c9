"""A validation problem: where (field path), what is wrong, and how to fix it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pydantic import ValidationError


@dataclass(frozen=True)
class Problem:
    """One problem found in a document. `path` is a dotted field path such as
    `inference.adapters[0].strength`; `hint` says how to fix it."""

    path: str
    message: str
    hint: str = ""

    def __str__(self) -> str:
        text = f"{self.path or '<document>'}: {self.message}"
        return f"{text} (hint: {self.hint})" if self.hint else text


def join_path(*parts: str | int) -> str:
    """Join path parts: strings are dotted, ints become `[i]` indexes."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "":
            continue
        elif part.startswith("["):
            out += part
        else:
            out += f".{part}" if out else part
    return out


def loc_to_path(loc: Sequence[str | int], prefix: str = "") -> str:
    return join_path(prefix, *loc)


_HINTS = {
    "missing": "add this field",
    "extra_forbidden": "remove this field or fix its spelling",
    "string_type": "quote the value so it is a string",
    "int_type": "use a whole number without quotes",
    "bool_type": "use true or false without quotes",
    "dict_type": "this field must be a mapping (key: value)",
    "list_type": "this field must be a list (- item)",
    "literal_error": "use one of the allowed values",
    "greater_than_equal": "use a larger value",
}


def problems_from_validation_error(err: ValidationError, prefix: str = "") -> list[Problem]:
    """Turn a pydantic ValidationError into Problems whose paths use the YAML field names."""
    problems = []
    for e in err.errors(include_url=False):
        loc = [p for p in e["loc"] if not (isinstance(p, str) and "[" in p and p.endswith("]"))]
        problems.append(
            Problem(
                loc_to_path(loc, prefix), e["msg"], _HINTS.get(e["type"], "fix the value's type or format")
            )
        )
    return problems


def dedupe(problems: Iterable[Problem]) -> list[Problem]:
    seen: set[Problem] = set()
    out = []
    for p in problems:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out
