"""A create body's input images: fetched (or decoded) and verified once, here, at create time."""

from __future__ import annotations

from collections.abc import Sequence

from kinema.config import Settings
from kinema.contracts.aimlapi import ImageReference
from kinema.errors import FieldError, ValidationFailed
from kinema.input_media import InputImage, InputPolicy, InputRefused, fetch_image, verify_image
from kinema.service import InputFile

SUFFIXES = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}


def input_policy(settings: Settings) -> InputPolicy:
    return InputPolicy(
        allow_http=settings.input_allow_http,
        allow_private=settings.input_allow_private,
        max_bytes=settings.input_max_bytes,
        timeout_seconds=settings.input_timeout_seconds,
    )


def refused_input(field: str, refused: InputRefused) -> ValidationFailed:
    return ValidationFailed(
        f"Body validation error: {field}: {refused}", [FieldError(field, str(refused))]
    )


def fetched(reference: ImageReference, settings: Settings) -> InputImage:
    """The image a body field names (URL or data URI); a 400 naming the field otherwise."""
    try:
        return fetch_image(reference.reference, input_policy(settings))
    except InputRefused as refused:
        raise refused_input(reference.field, refused) from None


def uploaded(field: str, data: bytes, settings: Settings) -> InputImage:
    """An image uploaded as a multipart file, verified as the fetched ones are."""
    try:
        return verify_image(data, settings.input_max_bytes)
    except InputRefused as refused:
        raise refused_input(field, refused) from None


def as_inputs(
    references: Sequence[ImageReference], images: Sequence[InputImage]
) -> list[InputFile]:
    return [
        InputFile(image.data, SUFFIXES[image.media_type], frame=reference.frame)
        for reference, image in zip(references, images, strict=True)
    ]
