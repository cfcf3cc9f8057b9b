"""What a request body may hold beyond being parseable: JSON that `json.loads` accepts but that
no contract can store or pass to a model (lone surrogates, NUL, absurd nesting or numbers)."""

from __future__ import annotations

import json
from typing import Any

from kinema.api.errors import WHOLE_BODY
from kinema.contracts.fields import validation_message
from kinema.errors import FieldError, ValidationFailed

# The contracts' bodies are flat objects; anything nested deeper is not one of them.
MAX_DEPTH = 32


def body_error(message: str) -> ValidationFailed:
    return ValidationFailed(f"Body validation error: {message}", [FieldError(WHOLE_BODY, message)])


def parse_json(raw: bytes) -> Any:
    """The parsed body; a 400 (never a crash) for anything that is not acceptable JSON."""
    try:
        return json.loads(raw)
    except UnicodeDecodeError:
        raise body_error("the body is not valid UTF-8") from None
    except json.JSONDecodeError:
        raise body_error("the body is not valid JSON") from None
    except RecursionError:
        raise body_error(f"the body is nested deeper than {MAX_DEPTH} levels") from None
    except ValueError:  # e.g. an integer of more digits than Python converts
        raise body_error("the body is not valid JSON: a number in it is too long") from None


def text_problem(text: str) -> str | None:
    """Why this text cannot be taken, or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode text (it holds a lone UTF-16 surrogate)"
    if "\x00" in text:
        return "must not contain NUL characters"
    return None


def check_values(body: Any) -> None:
    """Refuse a body whose text cannot be encoded as UTF-8 or stored, or that nests too deep,
    naming the field (dotted path) that holds it."""
    pending: list[tuple[str, Any, int]] = [("", body, 0)]
    while pending:
        path, value, depth = pending.pop()
        if depth > MAX_DEPTH:
            raise body_error(f"the body is nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, str):
            _check_text(path or WHOLE_BODY, value)
        elif isinstance(value, dict):
            for name, item in value.items():
                _check_text(path or WHOLE_BODY, name)
                pending.append((_join(path, name), item, depth + 1))
        elif isinstance(value, list):
            pending.extend((_join(path, str(i)), item, depth + 1) for i, item in enumerate(value))


def _check_text(field: str, text: str) -> None:
    problem = text_problem(text)
    if problem is not None:
        errors = [FieldError(field, problem)]
        raise ValidationFailed(validation_message(errors), errors)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name
