"""The counter page served on a plain GET of a counter's path."""

from __future__ import annotations

import html
from functools import cache
from importlib import resources

# Everything the page needs is inline or /client.js from the worker that served
# it; it may only connect back to its own host.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self' ws: wss:; img-src data:; base-uri 'none'; form-action 'none'"
)


@cache
def _template() -> str:
    return resources.files(__package__).joinpath("web", "counter.html").read_text()


def render(counter: str) -> bytes:
    return _template().replace("{{COUNTER}}", html.escape(counter)).encode()
