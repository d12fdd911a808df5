"""`facegan app`: runs the Streamlit page flows/app_page.py."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from facegan.config.app import AppConfig

PAGE = Path(__file__).with_name("app_page.py")


def main(config: AppConfig) -> None:
    from streamlit.web import cli as stcli

    print(f"facegan app on http://{config.host}:{config.port} (Ctrl-C to stop)", flush=True)
    os.environ.setdefault("STREAMLIT_BROWSER_GATHER_USAGE_STATS", "false")
    sys.argv = [
        "streamlit",
        "run",
        str(PAGE),
        "--server.address",
        config.host,
        "--server.port",
        str(config.port),
        "--server.headless",
        str(not config.browser).lower(),
    ]
    sys.exit(stcli.main())
