"""Pydantic's validation errors as the contracts' per-field errors."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from kinema.errors import FieldError, ValidationFailed


def field_errors_from_pydantic(
    raw_errors: Iterable[Mapping[str, Any]], drop: int = 0
) -> list[FieldError]:
    result = []
    for error in raw_errors:
        location = [str(part) for part in error.get("loc", ())][drop:]
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        result.append(FieldError(".".join(location) or "body", message))
    return result


def validation_message(errors: list[FieldError]) -> str:
    details = "; ".join(f"{e.field}: {e.message}" for e in errors)
    return f"Body validation error: {details}"


def renamed(refused: ValidationFailed, names: Mapping[str, str]) -> ValidationFailed:
    """`refused` with the request's field names replaced by a contract's own (`names`)."""
    if not names:
        return refused
    errors = [FieldError(names.get(e.field, e.field), e.message) for e in refused.errors]
    return ValidationFailed(validation_message(errors), errors)
