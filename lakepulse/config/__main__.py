"""`python -m lakepulse.config upgrade|downgrade REV|current`: the configuration schema's migrations against
`config_database_url` (settings), e.g. a managed PostgreSQL in cluster mode."""

from __future__ import annotations

import sys

from lakepulse.config.migrate import current_revision, downgrade, head_revision, upgrade
from lakepulse.settings import get_settings

USAGE = "usage: python -m lakepulse.config upgrade [REVISION] | downgrade REVISION | current"


def main(argv: list[str]) -> int:
    url = get_settings().config_database_url
    if argv[:1] == ["upgrade"] and len(argv) <= 2:
        upgrade(url, argv[1] if len(argv) == 2 else "head")
    elif argv[:1] == ["downgrade"] and len(argv) == 2:
        downgrade(url, argv[1])
    elif argv == ["current"]:
        print(f"database at {current_revision(url) or 'no revision'}; newest migration {head_revision()}")
    else:
        print(USAGE, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
