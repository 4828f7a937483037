"""A scripted browser for oidc-provider's dev interactions: login form, consent, callback.

Follows redirects itself and stops at the relying party's redirect URI (nothing
listens there in tests), returning the callback's parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx

_MAX_STEPS = 20


@dataclass(frozen=True)
class Callback:
    code: str
    state: str
    url: str


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self._in_form = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form" and self.action is None:
            self.action = values.get("action", "")
            self._in_form = True
        elif tag == "input" and self._in_form and values.get("name"):
            self.fields[values["name"]] = values.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._in_form = False


def _at_redirect_uri(location: str, redirect_uri: str) -> bool:
    here, there = urlsplit(location), urlsplit(redirect_uri)
    return (here.scheme, here.netloc, here.path) == (there.scheme, there.netloc, there.path)


async def log_in(
    authorization_url: str, redirect_uri: str, login: str, *, http_timeout: float = 30.0
) -> Callback:
    """Sign in as `login` (any name: it becomes the `sub`), consent, and read the callback."""
    async with httpx.AsyncClient(timeout=http_timeout, follow_redirects=False) as http:
        response = await http.get(authorization_url)
        for _ in range(_MAX_STEPS):
            if response.is_redirect:
                location = urljoin(str(response.url), response.headers["location"])
                if _at_redirect_uri(location, redirect_uri):
                    query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
                    if "code" not in query:
                        raise AssertionError(f"the provider answered with an error: {query}")
                    return Callback(query["code"], query.get("state", ""), location)
                response = await http.get(location)
                continue
            parser = _FormParser()
            parser.feed(response.text)
            if parser.action is None:
                raise AssertionError(
                    f"no form and no redirect at {response.url} ({response.status_code}): "
                    f"{response.text[:500]}"
                )
            fields = dict(parser.fields)
            if "login" in fields:
                # The test provider's dev login page takes any password.
                fields.update(login=login, password="any password")  # noqa: S106  # nosec B106
            response = await http.post(urljoin(str(response.url), parser.action), data=fields)
    raise AssertionError(f"no callback after {_MAX_STEPS} steps")
