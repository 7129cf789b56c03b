"""The dashboard's HTML: templates from `web/templates` filled with escaped values, and the headers pages carry.

Pages hold no data: their scripts read it from the public API (`/v1/...`) like any client. The server fills in
only who is signed in and what the page shows (tenant, timezone, currency), each value HTML-escaped.
"""

from __future__ import annotations

import html
import re
from functools import lru_cache
from pathlib import Path
from string import Template
from typing import Final

from lakepulse.api.windows import iana_zones

WEB_DIR: Final = Path(__file__).resolve().parents[3] / "web"
STATIC_DIR: Final = WEB_DIR / "static"  # our ES modules and CSS, served as they are
VENDOR_DIR: Final = WEB_DIR / "vendor"  # uPlot's dist files, copied from npm by `make web`
TEMPLATES_DIR: Final = WEB_DIR / "templates"

# Scripts and styles only from our own origin (no inline code, no CDN); no framing; forms post only to us.
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
PAGE_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
_CURRENCY_RE: Final = re.compile(r"[A-Z]{3}")


class Html(str):
    """Markup that is already safe (a rendered template): inserted into another template as it is."""


@lru_cache(maxsize=32)
def _template(name: str) -> Template:
    return Template((TEMPLATES_DIR / f"{name}.html").read_text(encoding="utf-8"))


def render(name: str, **values: object) -> Html:
    """`web/templates/<name>.html` with its `${...}` placeholders filled: Html values as they are, everything
    else HTML-escaped (so no value a user chose can become markup)."""
    filled = {key: value if isinstance(value, Html) else html.escape(str(value), quote=True)
              for key, value in values.items()}
    return Html(_template(name).substitute(filled))


def page(title: str, content: Html, nav: Html | str = "") -> Html:
    """A whole page: the layout around `content`."""
    return render("layout", title=title, content=content, nav=nav)


def checked_timezone(value: str | None) -> str:
    """`value` if it is an IANA zone name, else "" (the page then uses the browser's zone)."""
    return value if value is not None and value in iana_zones() else ""


def checked_currency(value: str | None) -> str:
    """`value` if it is an ISO 4217-shaped code (three capital letters), else "" (amounts shown without one)."""
    return value if value is not None and _CURRENCY_RE.fullmatch(value) else ""
