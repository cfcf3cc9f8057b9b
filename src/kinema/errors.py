"""kinema's one exception tree. The API maps each class to exactly one HTTP status."""

from __future__ import annotations

from dataclasses import dataclass


class KinemaError(Exception):
    """Base of every error kinema raises on purpose."""


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str


class ValidationFailed(KinemaError):
    def __init__(self, message: str, errors: list[FieldError] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors or []


class Unauthorized(KinemaError):
    pass


class NotFound(KinemaError):
    pass


class Forbidden(KinemaError):
    pass


class PayloadTooLarge(KinemaError):
    pass


class QueueFull(KinemaError):
    """Too many queued jobs (for this key or in all); the client should retry later."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ModelUnavailable(KinemaError):
    """The model cannot be loaded: missing weights, unknown id, broken configuration."""


class GenerationCanceled(KinemaError):
    """The job was canceled while it ran; its output must be discarded."""


class LeaseLost(KinemaError):
    """The worker's lease on a job is no longer current; another worker owns the job now."""


class ClientError(KinemaError):
    """An HTTP error answered by a kinema (or AI/ML API) server, seen from the client."""

    def __init__(self, status_code: int, message: str, body: object = None) -> None:
        super().__init__(f"HTTP {status_code}: {message}")
        self.status_code = status_code
        self.message = message
        self.body = body
