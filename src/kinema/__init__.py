"""kinema: self-hosted text-to-video with sound, speaking the AI/ML API video contract."""

from kinema.client import AsyncClient, Client, Generation, Video
from kinema.errors import ClientError, KinemaError

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "Client",
    "ClientError",
    "Generation",
    "KinemaError",
    "Video",
    "__version__",
]
