"""Seam advance: after [start, end) is rebuilt, checked and reconciled, serve it from Delta (no Spark)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from lakepulse.batch.seam import advance
from lakepulse.settings import get_settings
from spark_jobs.common import job_args


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: prints where the seam went."""
    rng, lake, _ = job_args(__doc__ or "", argv)
    print(json.dumps(advance(get_settings(), lake.seam_uri, lake.trino_schema, lake.delta_root, rng.start,
                             rng.end)))


if __name__ == "__main__":
    main(sys.argv[1:])
