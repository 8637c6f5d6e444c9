"""The subset of Kubernetes JSONPath used by printer columns: `.a.b`, `['k']`, `[n]`, `[*]`,
`[?(@.x.y=="v")]` (also `!=`), and `\\.` escapes in names."""

from __future__ import annotations

import re
from typing import Any

_FILTER_RE = re.compile(r"""^\?\(@((?:\.[^=!<>]+?)+)\s*(==|!=)\s*(?:"([^"]*)"|'([^']*)'|(\S+?))\s*\)$""")


def _tokens(path: str) -> list[tuple[str, Any]]:
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    toks: list[tuple[str, Any]] = []
    i = 0
    while i < len(path):
        c = path[i]
        if c == ".":
            i += 1
            name = ""
            while i < len(path) and path[i] not in ".[":
                if path[i] == "\\" and i + 1 < len(path):
                    name += path[i + 1]
                    i += 2
                    continue
                name += path[i]
                i += 1
            if name:
                toks.append(("field", name))
        elif c == "[":
            depth, j = 0, i
            while j < len(path):
                if path[j] == "[":
                    depth += 1
                elif path[j] == "]":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            inner = path[i + 1 : j].strip()
            i = j + 1
            if inner == "*":
                toks.append(("all", None))
            elif inner.startswith("?"):
                m = _FILTER_RE.match(inner)
                if not m:
                    raise ValueError(f"unsupported JSONPath filter: [{inner}]")
                sub = [p for p in m.group(1).split(".") if p]
                value = next(g for g in (m.group(3), m.group(4), m.group(5)) if g is not None)
                toks.append(("filter", (sub, m.group(2), value)))
            elif inner[:1] in "'\"":
                toks.append(("field", inner[1:-1]))
            else:
                toks.append(("index", int(inner)))
        else:
            raise ValueError(f"unsupported JSONPath: {path}")
    return toks


def find(obj: Any, path: str) -> list[Any]:
    """All values matched by `path` in `obj` (empty when nothing matches)."""
    current = [obj]
    for kind, arg in _tokens(path):
        nxt: list[Any] = []
        for v in current:
            if (kind == "field" and isinstance(v, dict) and arg in v) or (
                kind == "index" and isinstance(v, list) and -len(v) <= arg < len(v)
            ):
                nxt.append(v[arg])
            elif kind == "all":
                if isinstance(v, list):
                    nxt.extend(v)
                elif isinstance(v, dict):
                    nxt.extend(v.values())
            elif kind == "filter" and isinstance(v, list):
                sub, op, want = arg
                for item in v:
                    got: Any = item
                    for p in sub:
                        got = got.get(p) if isinstance(got, dict) else None
                    text = (
                        got
                        if isinstance(got, str)
                        else ("" if got is None else str(got).lower() if isinstance(got, bool) else str(got))
                    )
                    if (text == want) == (op == "=="):
                        nxt.append(item)
        current = nxt
    return current
