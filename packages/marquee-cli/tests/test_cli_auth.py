"""`marquee auth ...` against an in-process auth service on a scratch PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import PostgresDsn
from typer.testing import CliRunner, Result

from marquee_auth.app import register
from marquee_auth.settings import AuthSettings
from marquee_cli import credentials
from marquee_cli.main import app
from marquee_testing.inprocess import RunningService, serving

runner = CliRunner()
PASSWORD = "correct horse battery staple"


@pytest.fixture
async def auth(scratch_database_url: str) -> AsyncIterator[RunningService]:
    settings = AuthSettings(
        grpc_port=0,
        metrics_port=-1,
        database_url=PostgresDsn(scratch_database_url),
        coordinator_endpoints=[],
        shutdown_grace_seconds=2,
        admin_usernames=["root"],
        # Cheap hashing: these tests are about the commands, not argon2.
        argon2_memory_kib=8 * 1024,
        argon2_time_cost=1,
    )
    async with serving("auth", settings, register) as running:
        yield running


async def marquee(
    service: RunningService, data_dir: Path, *args: str, password: str = PASSWORD
) -> Result:
    argv = ["auth", *args, "--address", service.address, "--data-dir", str(data_dir)]
    env = {"MARQUEE_PASSWORD": password, "MARQUEE_TOKEN": ""}
    # The command blocks on its own channel: off this loop, which serves the service.
    return await asyncio.to_thread(runner.invoke, app, argv, env=env)


async def signup(
    service: RunningService, data_dir: Path, name: str, *args: str, password: str = PASSWORD
) -> Result:
    email = f"{name}@example.com"
    return await marquee(
        service, data_dir, "register", name, "--email", email, *args, password=password
    )


async def test_an_admin_grants_and_checks_access(auth: RunningService, tmp_path: Path) -> None:
    admin_dir, user_dir = tmp_path / "admin", tmp_path / "user"
    root = await signup(auth, admin_dir, "root")
    assert root.exit_code == 0, root.output
    registered = await marquee(
        auth, user_dir, "register", "alice", "--email", "alice@example.com", "--json"
    )
    assert registered.exit_code == 0, registered.output
    alice = json.loads(registered.stdout)["id"]

    logged_in = await marquee(auth, admin_dir, "login", "root")
    assert logged_in.exit_code == 0, logged_in.output
    saved = credentials.credentials_path(admin_dir)
    assert saved.stat().st_mode & 0o777 == 0o600

    assert (await marquee(auth, admin_dir, "check", alice, "/media/1", "read")).exit_code == 1
    added = await marquee(auth, admin_dir, "policy", "add", "viewer", "/media/*", "read")
    assert added.exit_code == 0, added.output
    assigned = await marquee(auth, admin_dir, "role", "assign", alice, "viewer")
    assert assigned.exit_code == 0, assigned.output
    allowed = await marquee(auth, admin_dir, "check", alice, "/media/1", "read")
    assert allowed.exit_code == 0, allowed.output
    assert allowed.stdout.strip() == "allowed"
    assert "viewer" in (await marquee(auth, admin_dir, "role", "list", alice)).stdout
    listed = await marquee(auth, admin_dir, "policy", "list", "--json")
    rules = json.loads(listed.stdout)["policies"]
    assert {"subject": "viewer", "object": "/media/*", "action": "read"}.items() <= rules[
        -1
    ].items()

    removed = await marquee(auth, admin_dir, "policy", "remove", "viewer", "/media/*", "read")
    assert removed.exit_code == 0, removed.output
    assert (await marquee(auth, admin_dir, "check", alice, "/media/1", "read")).exit_code == 1
    again = await marquee(auth, admin_dir, "policy", "remove", "viewer", "/media/*", "read")
    assert again.exit_code == 1
    assert "no such rule" in again.output

    assert (await marquee(auth, admin_dir, "logout")).exit_code == 0
    assert not saved.exists()


async def test_bad_credentials_and_missing_permission(auth: RunningService, tmp_path: Path) -> None:
    assert (
        await marquee(auth, tmp_path, "register", "bob", "--email", "bob@example.com")
    ).exit_code == 0
    wrong = await marquee(auth, tmp_path, "login", "bob", password="not the password")
    assert wrong.exit_code == 1
    assert "UNAUTHENTICATED" in wrong.output

    not_logged_in = await marquee(auth, tmp_path, "policy", "list")
    assert not_logged_in.exit_code == 1
    assert "no access token" in not_logged_in.output

    assert (await marquee(auth, tmp_path, "login", "bob")).exit_code == 0
    denied = await marquee(auth, tmp_path, "policy", "add", "bob", "*", "*")
    assert denied.exit_code == 1
    assert "PERMISSION_DENIED" in denied.output

    short = await marquee(
        auth, tmp_path / "other", "register", "carol", "--email", "c@example.com", password="short"
    )
    assert short.exit_code == 1
    assert "INVALID_ARGUMENT" in short.output
