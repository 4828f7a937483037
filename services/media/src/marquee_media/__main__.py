"""Entry point: `python -m marquee_media`."""

from marquee_platform.quiet_imports import service_modules_loading

if __name__ == "__main__":
    # Optional extras some libraries import just because they are installed
    # (rich, click) are hidden while the service loads, and the garbage
    # collector waits until it has: start-up time.
    with service_modules_loading():
        from marquee_media.app import register
        from marquee_media.settings import MediaSettings
        from marquee_platform import run_service

    run_service("media", MediaSettings, register)
