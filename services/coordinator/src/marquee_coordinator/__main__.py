"""Entry point: `python -m marquee_coordinator`.

The Raft node starts first, before the platform's server stack (most of
start-up) is imported, so a fresh cluster elects while the rest loads
(`early_start`). Optional extras some libraries import just because they are
installed (rich, click) are hidden while the modules load, and the garbage
collector waits until the server stack has loaded: start-up time.
"""

import os

from marquee_platform.quiet_imports import extras_hidden, service_modules_loading

with extras_hidden():
    from marquee_coordinator import early_start

if __name__ == "__main__":
    early_start.start_from_environment(os.environ)
    try:
        with service_modules_loading():
            from marquee_coordinator.app import register
            from marquee_coordinator.settings import CoordinatorSettings
            from marquee_platform import run_service

        run_service("coordinator", CoordinatorSettings, register)
    finally:
        early_start.close_unadopted()
