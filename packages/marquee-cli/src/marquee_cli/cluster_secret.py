"""The coordinator cluster's shared secret, generated once per data directory."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

SECRET_FILE_MODE = 0o600


def load_or_create_secret(path: Path) -> str:
    """Read the secret at `path`, creating it (readable by its owner only) on first use.

    Kept across runs because the coordinators' Raft journal on disk belongs to
    a cluster with this secret.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SECRET_FILE_MODE)
    except FileExistsError:
        # Someone may have loosened it by hand; a readable secret is no secret.
        path.chmod(SECRET_FILE_MODE)
        secret = path.read_text().strip()
        if not secret:
            raise ValueError(f"{path} is empty; delete it to generate a new secret") from None
        return secret
    secret = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as file:
        file.write(secret + "\n")
    return secret
