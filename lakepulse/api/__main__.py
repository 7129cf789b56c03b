"""`python -m lakepulse.api`: serve the metrics API on the configured host and port."""

from __future__ import annotations

import uvicorn

from lakepulse.settings import get_settings


def main() -> None:
    """Run the app factory under uvicorn on settings.bind_host:settings.api_port."""
    settings = get_settings()
    uvicorn.run("lakepulse.api.app:create_app", factory=True, host=settings.bind_host, port=settings.api_port,
                proxy_headers=False, log_level="info")


if __name__ == "__main__":
    main()
