"""The dev console in a real Chromium: passkeys through its virtual authenticator.

Chromium's CDP virtual authenticator runs real WebAuthn ceremonies against the
console page, which calls auth over gRPC. Its counter starts at 1 and counts
up; a counter that goes backwards is made by putting the same credential
back with an older counter.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from auth_support import PASSWORD, auth_service, unique_name
from playwright.async_api import Browser, CDPSession, Page, async_playwright

from marquee_localservers import BackendUnavailable, free_port
from marquee_localservers.chromium import find_chromium
from marquee_testing.backends import require_backend

UI_TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def chromium() -> str:
    try:
        return find_chromium()
    except BackendUnavailable as exc:
        require_backend("chromium", str(exc))


@pytest.fixture
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        # --no-sandbox: the tests run as root, where Chromium's sandbox cannot start.
        launched = await playwright.chromium.launch(
            executable_path=chromium, headless=True, args=["--no-sandbox"]
        )
        try:
            yield launched
        finally:
            await launched.close()


async def with_authenticator(page: Page) -> tuple[CDPSession, str]:
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("WebAuthn.enable")
    added = await cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    return cdp, added["authenticatorId"]


async def status_after(page: Page, button: str) -> str:
    await page.evaluate("document.getElementById('status').textContent = ''")
    await page.click(button)
    await page.wait_for_function(
        "document.getElementById('status').textContent !== ''", timeout=UI_TIMEOUT_MS
    )
    return await page.text_content("#status") or ""


async def register_and_login(page: Page, name: str) -> str:
    await page.fill("#register-username", name)
    await page.fill("#register-email", f"{name}@example.com")
    await page.fill("#register-password", PASSWORD)
    assert "registered" in await status_after(page, "#register-button")
    await page.fill("#login-username", name)
    await page.fill("#login-password", PASSWORD)
    assert "logged in as" in await status_after(page, "#login-button")
    return await page.text_content("#whoami") or ""


@pytest.mark.timeout(180)
async def test_a_passkey_registered_in_the_console_logs_in_alone_and_as_second_factor(
    browser: Browser, scratch_database_url: str
) -> None:
    port = free_port()
    origin = f"http://localhost:{port}"
    async with auth_service(scratch_database_url, console_port=port, webauthn_origins=[origin]):
        page = await browser.new_page()
        await page.goto(origin + "/")
        await with_authenticator(page)
        name = unique_name("browser")
        user_id = await register_and_login(page, name)
        assert user_id != "nobody"

        await page.fill("#passkey-nickname", "virtual")
        assert "passkey added: virtual" in await status_after(page, "#passkey-register-button")
        assert "logged out" in await status_after(page, "#logout-button")

        # Passkey only: no username typed, the discoverable credential names the user.
        assert "logged in as" in await status_after(page, "#passkey-login-button")
        assert await page.text_content("#whoami") == user_id
        await status_after(page, "#logout-button")

        # The password now asks for the second factor; the passkey answers it.
        await page.fill("#login-username", name)
        await page.fill("#login-password", PASSWORD)
        assert "second factor needed" in await status_after(page, "#login-button")
        assert "MFA_METHOD_WEBAUTHN" in (await page.text_content("#mfa-methods") or "")
        assert "logged in as" in await status_after(page, "#mfa-passkey-button")
        assert await page.text_content("#whoami") == user_id


@pytest.mark.timeout(180)
async def test_a_counter_that_goes_backwards_is_refused_in_the_browser(
    browser: Browser, scratch_database_url: str
) -> None:
    port = free_port()
    origin = f"http://localhost:{port}"
    async with auth_service(scratch_database_url, console_port=port, webauthn_origins=[origin]):
        page = await browser.new_page()
        await page.goto(origin + "/")
        cdp, authenticator = await with_authenticator(page)
        await register_and_login(page, unique_name("clone"))
        await page.fill("#passkey-nickname", "original")
        assert "passkey added" in await status_after(page, "#passkey-register-button")
        await status_after(page, "#logout-button")
        for _ in range(2):
            assert "logged in as" in await status_after(page, "#passkey-login-button")
            await status_after(page, "#logout-button")

        # A copy of the key with an older counter: what a cloned authenticator shows.
        credentials: dict[str, Any] = await cdp.send(
            "WebAuthn.getCredentials", {"authenticatorId": authenticator}
        )
        (credential,) = credentials["credentials"]
        assert credential["signCount"] >= 2
        await cdp.send(
            "WebAuthn.removeCredential",
            {"authenticatorId": authenticator, "credentialId": credential["credentialId"]},
        )
        await cdp.send(
            "WebAuthn.addCredential",
            {"authenticatorId": authenticator, "credential": {**credential, "signCount": 0}},
        )
        refused = await status_after(page, "#passkey-login-button")
        assert "UNAUTHENTICATED" in refused
        assert "counter went backwards" in refused
        assert await page.text_content("#whoami") == "nobody"


async def test_the_console_refuses_unknown_methods_and_bad_bodies(
    scratch_database_url: str,
) -> None:
    port = free_port()
    async with (
        auth_service(scratch_database_url, console_port=port),
        aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http,
    ):
        async with http.post("/api/rpc/NoSuchMethod", json={}) as unknown:
            assert unknown.status == 404
        async with http.post("/api/rpc/Login", data=b"{not json") as garbage:
            assert garbage.status == 400
        async with http.post("/api/rpc/Login", json={"nope": 1}) as misfit:
            assert misfit.status == 400
            assert (await misfit.json())["code"] == "INVALID_ARGUMENT"
        async with http.post("/api/rpc/Login", json={}) as empty:
            assert empty.status == 400
            assert "username: " in " ".join((await empty.json())["violations"])
        async with http.get("/") as page:
            assert page.status == 200
            assert "dev console" in await page.text()
