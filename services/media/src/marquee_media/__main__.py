"""Entry point: `python -m marquee_media`."""

from marquee_media.app import register
from marquee_media.settings import MediaSettings
from marquee_platform import run_service

if __name__ == "__main__":
    run_service("media", MediaSettings, register)
