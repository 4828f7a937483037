"""The tokens `marquee auth login` keeps for the other commands, one file per suite.

`<data dir>/cli/credentials.json`, readable by its owner only (0600): the
access token, its expiry, and the refresh token. A command that needs an
identity takes `--token`/`MARQUEE_TOKEN` first; otherwise it uses this file,
and once the access token is within a minute of expiring it refreshes it
through auth (Refresh rotates the refresh token, so the file is rewritten).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from marquee_cli.output import fail
from marquee_cli.service_address import suite_service_address

if TYPE_CHECKING:
    from marquee.auth.v1 import auth_pb2

AUTH_PROCESS = "auth"
# Refresh this long before the access token's expiry: a call must not carry one
# that lapses on its way.
REFRESH_MARGIN_SECONDS = 60.0
REFRESH_TIMEOUT = 10.0


def credentials_path(data_dir: Path) -> Path:
    return data_dir.absolute() / "cli" / "credentials.json"


def save(data_dir: Path, tokens: auth_pb2.Tokens, auth_address: str | None) -> Path:
    """Write `tokens` for this suite (0600, replaced atomically); returns the path."""
    path = credentials_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    document = {
        "access_token": tokens.access_token,
        "access_token_expires_at": tokens.access_token_expires_at.ToDatetime().timestamp(),
        "refresh_token": tokens.refresh_token,
        "user_id": tokens.user_id,
        "session_id": tokens.session_id,
        "auth_address": auth_address,
    }
    partial = path.with_suffix(".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        json.dump(document, file)
    partial.replace(path)
    return path


def load(data_dir: Path) -> dict[str, Any] | None:
    path = credentials_path(data_dir)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise fail(f"cannot read {path}: {exc}; run `marquee auth login` again") from None
    if not isinstance(document, dict) or not isinstance(document.get("access_token"), str):
        raise fail(f"{path} holds no access token; run `marquee auth login` again")
    return document


def forget(data_dir: Path) -> bool:
    path = credentials_path(data_dir)
    existed = path.exists()
    path.unlink(missing_ok=True)
    return existed


def bearer(given: str | None, data_dir: Path) -> tuple[tuple[str, str]]:
    """The call metadata that carries `access_token(given, data_dir)`."""
    return (("authorization", f"Bearer {access_token(given, data_dir)}"),)


def access_token(given: str | None, data_dir: Path) -> str:
    """`given` (--token / MARQUEE_TOKEN), else the saved one, refreshed when near expiry."""
    if given:
        return given
    saved = load(data_dir)
    if saved is None:
        raise fail("no access token: pass --token, set MARQUEE_TOKEN, or run `marquee auth login`")
    expires = float(saved.get("access_token_expires_at") or 0)
    if time.time() < expires - REFRESH_MARGIN_SECONDS or not saved.get("refresh_token"):
        return str(saved["access_token"])
    return _refreshed(saved, data_dir)


def _refreshed(saved: dict[str, Any], data_dir: Path) -> str:
    import grpc

    from marquee.auth.v1 import auth_pb2, auth_pb2_grpc

    address = saved.get("auth_address") or suite_service_address(AUTH_PROCESS, None, data_dir)
    request = auth_pb2.RefreshRequest(refresh_token=saved["refresh_token"])
    with grpc.insecure_channel(address) as channel:
        try:
            reply = auth_pb2_grpc.AuthServiceStub(channel).Refresh(request, timeout=REFRESH_TIMEOUT)
        except grpc.RpcError as error:
            raise fail(
                f"the saved session could not be refreshed ({error.code().name}: "
                f"{error.details()}); run `marquee auth login` again",
                grpc_status=error.code().name,
            ) from None
    save(data_dir, reply.tokens, address)
    return reply.tokens.access_token
