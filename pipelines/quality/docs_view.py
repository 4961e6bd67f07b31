"""GX Data Docs views that HTML-escape every data value they write into a page.

GX 1.24 renders Data Docs with Jinja templates named `*.j2`, so its `select_autoescape(["html",
"xml"])` never turns escaping on. String-template parameters are escaped by GX itself, but a
content block that is a plain string (a table cell, a list item: the values of
`partial_unexpected_counts`, `partial_unexpected_list`, observed values) is written into the
page as it is. A delivered value such as `<img src=x onerror=...>` then becomes markup and its
script runs in the reader's browser (stored XSS).

These views are GX's page and index views with one change: a plain-string content block, and
every plain element of a list block, is escaped with `markupsafe.escape` before it is written.
GX's own markup never travels as a plain string (it is a dict content block rendered by a
template, or a trusted string-template parameter such as the status icon), so pages look the
same; data shows as text. They are configured as the `view` of every Data Docs section in
`pipelines.quality.gx_duckdb.gx_context` (GX's documented `site_section_builders` /
`site_index_builder` options).
"""

from __future__ import annotations

from typing import Any

from great_expectations.render.components import RenderedComponentContent
from great_expectations.render.view.view import DefaultJinjaIndexPageView, DefaultJinjaPageView
from jinja2 import pass_context
from markupsafe import escape


def _escaped(content_block: Any) -> Any:
    """`content_block` with its data escaped: a string, or the plain elements of a list."""
    if isinstance(content_block, str):
        return str(escape(content_block))
    if isinstance(content_block, list):
        return [
            item
            if isinstance(item, RenderedComponentContent)
            or (isinstance(item, dict) and "content_block_type" in item)
            else str(escape(str(item)))
            for item in content_block
        ]
    return content_block


class _EscapingMixin:
    @pass_context
    def render_content_block(  # type: ignore[override]
        self,
        jinja_context: Any,
        content_block: Any,
        index: Any = None,
        content_block_id: Any = None,
        render_to_markdown: bool = False,
    ) -> Any:
        return super().render_content_block(  # type: ignore[misc]
            jinja_context,
            _escaped(content_block),
            index,
            content_block_id=content_block_id,
            render_to_markdown=render_to_markdown,
        )


class EscapingPageView(_EscapingMixin, DefaultJinjaPageView):
    """The expectation-suite and validation pages, data escaped."""


class EscapingIndexPageView(_EscapingMixin, DefaultJinjaIndexPageView):
    """The Data Docs index page, data escaped."""
