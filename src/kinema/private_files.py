"""Files only this user can read: the data dir holds the keys' webhook secrets and the signing
key, so what kinema creates there is 0700 (folders) and 0600 (files)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def make_private_dirs(path: Path) -> Path:
    """Create `path` and any missing parents, each 0700; folders that exist keep their mode
    (an operator who made the data dir chose its mode)."""
    missing: list[Path] = []
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing.append(folder)
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it first
            folder.mkdir(mode=PRIVATE_DIR_MODE)
            folder.chmod(PRIVATE_DIR_MODE)  # mkdir's mode is narrowed by the umask, never widened
    return path


def create_private_file(path: Path) -> None:
    """Create an empty `path` with mode 0600 if it does not exist yet."""
    make_private_dirs(path.parent)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE))
