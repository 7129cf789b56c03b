"""Write the Pinot schemas/tables and Trino views the catalog implies: `python -m lakepulse.catalog.generate`.

`--check` writes nothing and exits 1 when a checked-in file differs from what the catalog generates.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lakepulse.catalog.model import Catalog, get_catalog
from lakepulse.catalog.pinot import TABLES, pinot_schema, pinot_table
from lakepulse.catalog.trino import trino_views

REPO_ROOT = Path(__file__).resolve().parents[2]


def _json(doc: dict) -> str:
    return json.dumps(doc, indent=2) + "\n"


def generated_files(catalog: Catalog | None = None) -> dict[Path, str]:
    """Repo-relative path → content of every generated file."""
    catalog = catalog or get_catalog()
    files: dict[Path, str] = {}
    for table in TABLES:
        files[Path("pinot_tables") / table.name / "schema.json"] = _json(pinot_schema(table))
        files[Path("pinot_tables") / table.name / "table.json"] = _json(pinot_table(table))
    for name, sql in trino_views(catalog).items():
        files[Path("trino_catalogs") / "views" / name] = sql
    return files


def stale_files(root: Path = REPO_ROOT) -> list[Path]:
    """Generated files missing under `root` or differing from what the catalog generates."""
    return [
        path
        for path, content in generated_files().items()
        if not (root / path).is_file() or (root / path).read_text(encoding="utf-8") != content
    ]


def main(argv: list[str] | None = None) -> int:
    """Write (or with --check, verify) the generated files under the repository root."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="verify only; exit 1 when files are stale")
    parser.add_argument(
        "--root", type=Path, default=REPO_ROOT, help="repository root (default: this checkout)"
    )
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files(args.root)
        for path in stale:
            print(f"stale: {path}", file=sys.stderr)
        return 1 if stale else 0
    for path, content in generated_files().items():
        target = args.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
