"""The templates in assets/ (cloud-init, units, Caddyfile, scripts), rendered with StrictUndefined."""
from __future__ import annotations

import functools

import jinja2

from core.catalog import ASSETS


@functools.lru_cache(maxsize=None)
def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(ASSETS)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def render(template: str, **values) -> str:
    return _templates().get_template(template).render(**values)


def asset(path: str) -> str:
    return (ASSETS / path).read_text(encoding="utf-8")
