"""Turning a pydantic validation error on one ``hours:``/``calendars:`` entry into the
(entry name, [(field path, message)]) the calendar config errors carry."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError


def config_problems(
    data: Mapping[str, Any], exc: ValidationError
) -> tuple[str, list[tuple[str, str]]]:
    name = str(data.get("name", "?")) if isinstance(data, Mapping) else "?"
    problems = [
        (
            ".".join(str(p) for p in err["loc"]) or "(top)",
            err["msg"].removeprefix("Value error, "),
        )
        for err in exc.errors()
    ]
    return name, problems
