"""Debian's chromium, for browser tests driven by Playwright through `executable_path`.

Playwright's own browser download cannot run here (no internet besides the
package registries), so tests use the distribution's build.
"""

from __future__ import annotations

from marquee_localservers.apt import find_or_install


def find_chromium() -> str:
    """Path of `chromium`: from PATH, else installed with apt when we are root."""
    return find_or_install("chromium", "chromium", "/usr/bin/chromium")
