"""Recognising a dataset's schema and turning each row into a chat conversation (or plain text).

Schemas:
- `messages`: OpenAI chat style, a list of `{role, content}` (dolly-15k-oai-style); ShareGPT's
  `conversations` list of `{from, value}` is accepted too.
- `prompt_completion`: `prompt` + `completion` columns (or Kaito's `context_column` /
  `response_column`).
- `instruction`: dolly's `instruction`, optional `context`, `response`.
- `text`: one `text` column; the model learns every token.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from kaito_runtime.tuning.config import DatasetSection
from kaito_runtime.tuning.errors import DataError

Message = dict[str, str]

_ROLES = {"system", "user", "assistant", "tool"}
_SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
    "chatgpt": "assistant",
    "bing": "assistant",
    "bard": "assistant",
}


@dataclass(frozen=True)
class SchemaChoice:
    name: str
    columns: dict[str, str]


@dataclass
class Example:
    """A conversation (`messages`) or a plain text (`text`)."""

    messages: list[Message] | None = None
    text: str | None = None


@dataclass
class Normalized:
    examples: list[Example]
    schema: SchemaChoice
    bad_rows: int = 0
    problems: list[str] = field(default_factory=list)


def _first(columns: set[str], *candidates: str) -> str | None:
    lowered = {c.lower(): c for c in columns}
    for name in candidates:
        if name in columns:
            return name
        if name.lower() in lowered:
            return lowered[name.lower()]
    return None


def detect_schema(columns: set[str], cfg: DatasetSection) -> SchemaChoice:
    """Which schema and columns to use; explicit settings win over detection."""
    wanted = cfg.schema_

    def need(column: str | None, what: str) -> str:
        if column is None or column not in columns:
            raise DataError(
                f"DatasetConfig: {what} column {column!r} not found; the data has columns {sorted(columns)}"
            )
        return column

    if cfg.messages_column or wanted == "messages":
        col = cfg.messages_column or _first(columns, "messages", "conversations", "conversation")
        return SchemaChoice("messages", {"messages": need(col, "messages")})
    if cfg.context_column or cfg.response_column or wanted == "prompt_completion":
        prompt = cfg.context_column or _first(columns, "prompt", "question", "input", "context")
        completion = cfg.response_column or _first(columns, "completion", "response", "answer", "output")
        return SchemaChoice(
            "prompt_completion",
            {
                "prompt": need(prompt, "prompt (context_column)"),
                "completion": need(completion, "completion (response_column)"),
            },
        )
    if cfg.instruction_column or wanted == "instruction":
        instruction = cfg.instruction_column or _first(columns, "instruction")
        response = _first(columns, "response", "output")
        choice = {"instruction": need(instruction, "instruction"), "response": need(response, "response")}
        if ctx := _first(columns, "context", "input"):
            choice["context"] = ctx
        return SchemaChoice("instruction", choice)
    if cfg.text_column or wanted == "text":
        return SchemaChoice("text", {"text": need(cfg.text_column or _first(columns, "text"), "text")})

    if col := _first(columns, "messages", "conversations"):
        return SchemaChoice("messages", {"messages": col})
    if (instruction := _first(columns, "instruction")) and (
        response := _first(columns, "response", "output")
    ):
        choice = {"instruction": instruction, "response": response}
        if ctx := _first(columns, "context", "input"):
            choice["context"] = ctx
        return SchemaChoice("instruction", choice)
    if (prompt := _first(columns, "prompt")) and (completion := _first(columns, "completion")):
        return SchemaChoice("prompt_completion", {"prompt": prompt, "completion": completion})
    if col := _first(columns, "text"):
        return SchemaChoice("text", {"text": col})
    raise DataError(
        f"the data has columns {sorted(columns)}, none of the known schemas: `messages` (chat), "
        "`prompt` + `completion`, `instruction` + `response` (dolly), or `text`. Rename the columns, "
        "or name them in DatasetConfig (messages_column, context_column + response_column, text_column)"
    )


def _text(value: Any, what: str) -> str:
    if value is None:
        raise ValueError(f"{what} is missing")
    if not isinstance(value, str):
        raise ValueError(f"{what} is a {type(value).__name__}, expected text")
    if not value.strip():
        raise ValueError(f"{what} is empty")
    return value


def _messages(value: Any) -> list[Message]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ValueError("messages is text that is not a JSON list") from None
    if hasattr(value, "tolist"):
        value = value.tolist()
    if not isinstance(value, list) or not value:
        raise ValueError("messages is not a non-empty list")
    out: list[Message] = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise ValueError(f"messages[{i}] is not an object")
        if "from" in item and "role" not in item:
            role = _SHAREGPT_ROLES.get(str(item.get("from")).lower())
            content = item.get("value")
        else:
            role, content = item.get("role"), item.get("content")
        if role not in _ROLES:
            raise ValueError(f"messages[{i}].role {role!r} is not one of {sorted(_ROLES)}")
        if not isinstance(content, str):
            raise ValueError(f"messages[{i}].content is not text")
        out.append({"role": role, "content": content})
    if not any(m["role"] == "assistant" and m["content"].strip() for m in out):
        raise ValueError("messages has no non-empty assistant message to learn from")
    return out


def to_example(row: dict[str, Any], schema: SchemaChoice, system_prompt: str | None) -> Example:
    """One row as an `Example`; raises ValueError saying what is wrong with the row."""
    cols = schema.columns
    if schema.name == "text":
        return Example(text=_text(row.get(cols["text"]), cols["text"]))
    if schema.name == "messages":
        messages = _messages(row.get(cols["messages"]))
    elif schema.name == "prompt_completion":
        messages = [
            {"role": "user", "content": _text(row.get(cols["prompt"]), cols["prompt"])},
            {"role": "assistant", "content": _text(row.get(cols["completion"]), cols["completion"])},
        ]
    else:
        prompt = _text(row.get(cols["instruction"]), cols["instruction"])
        context = row.get(cols.get("context", ""))
        if isinstance(context, str) and context.strip():
            prompt = f"{prompt}\n\n{context.strip()}"
        messages = [
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": _text(row.get(cols["response"]), cols["response"])},
        ]
    if system_prompt and messages[0]["role"] != "system":
        messages = [{"role": "system", "content": system_prompt}, *messages]
    return Example(messages=messages)


def normalize(rows: list[dict[str, Any]], cfg: DatasetSection) -> Normalized:
    """Detect the schema from the columns, then convert every row; bad rows are counted."""
    columns: set[str] = set()
    for row in rows[:1000]:
        columns.update(row.keys())
    schema = detect_schema(columns, cfg)
    result = Normalized([], schema)
    for index, row in enumerate(rows):
        try:
            result.examples.append(to_example(row, schema, cfg.system_prompt))
        except ValueError as exc:
            result.bad_rows += 1
            if len(result.problems) < 5:
                result.problems.append(f"row {index}: {exc}")
    return result
