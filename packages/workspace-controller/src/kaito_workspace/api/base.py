"""Base model for Kubernetes-style API objects: camelCase on the wire, unknown fields kept so they
can be reported (a typo must not vanish silently), strict types like the API server's schema."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from .problems import Problem, join_path


class ApiModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="allow",
        strict=True,
        validate_assignment=False,
    )

    def to_dict(self) -> dict[str, Any]:
        """The object as Kubernetes JSON (camelCase keys, unset fields left out, unknown fields kept)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def unknown_fields(model: BaseModel, path: str = "") -> list[Problem]:
    """Every field present in the input but not in the API, with its path."""
    problems: list[Problem] = []
    for key in model.model_extra or {}:
        known = sorted(f.alias or name for name, f in type(model).model_fields.items())
        problems.append(
            Problem(
                join_path(path, key),
                f"unknown field {key!r}",
                f"remove it or fix its spelling; known fields here: {', '.join(known)}",
            )
        )
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        sub = join_path(path, field.alias or name)
        if isinstance(value, BaseModel):
            problems.extend(unknown_fields(value, sub))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, BaseModel):
                    problems.extend(unknown_fields(item, join_path(sub, i)))
    return problems
