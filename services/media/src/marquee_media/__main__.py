"""Entry point: `python -m marquee_media`."""

from marquee_platform import run_service

from marquee_media.app import register
from marquee_media.settings import MediaSettings

if __name__ == "__main__":
    run_service("media", MediaSettings, register)
