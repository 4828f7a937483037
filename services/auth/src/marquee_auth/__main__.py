"""Entry point: `python -m marquee_auth`."""

from marquee_platform.quiet_imports import extras_hidden

if __name__ == "__main__":
    # Optional extras some libraries import just because they are installed
    # (rich, click) are hidden while the service loads: start-up time.
    with extras_hidden():
        from marquee_auth.app import register
        from marquee_auth.settings import AuthSettings
        from marquee_platform import run_service

    run_service("auth", AuthSettings, register)
