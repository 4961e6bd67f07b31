"""GX Data Docs views: every data value HTML-escaped, every style, script and font local.

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

GX's page templates load Bootstrap, jQuery, Font Awesome, Vega and their plugins from CDNs
(and the logo from S3): offline, a page without styles whose tables stay empty (they are
filled by bootstrap-table's script). The views read GX's templates through `OfflineLoader`,
which replaces each CDN address by its copy in `data_docs_vendor/` (the npm packages of the
same versions; see its README), and `copy_vendored_assets` puts that folder beside the
pages, in `<data docs>/static/vendor/`. A page refers to it by a relative path
(`crm_static_dir`, computed as GX's own navbar computes its home link), so the site can be
moved or opened from a file share.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from great_expectations.render.components import RenderedComponentContent
from great_expectations.render.view.view import DefaultJinjaIndexPageView, DefaultJinjaPageView
from jinja2 import BaseLoader, Environment, pass_context
from markupsafe import escape

VENDOR_DIR = Path(__file__).with_name("data_docs_vendor")

#: Every address GX 1.24's templates load a resource from -> its copy under VENDOR_DIR.
CDN_ASSETS: dict[str, str] = {
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": (
        "bootstrap-table/bootstrap-table.min.css"
    ),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": (
        "bootstrap-table/bootstrap-table.min.js"
    ),
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/"
    "bootstrap-table-filter-control.min.css": (
        "bootstrap-table/extensions/filter-control/bootstrap-table-filter-control.min.css"
    ),
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/"
    "bootstrap-table-filter-control.css": (
        "bootstrap-table/extensions/filter-control/bootstrap-table-filter-control.min.css"
    ),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/"
    "bootstrap-table-filter-control.min.js": (
        "bootstrap-table/extensions/filter-control/bootstrap-table-filter-control.min.js"
    ),
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": (
        "bootstrap/bootstrap.min.css"
    ),
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": (
        "bootstrap/bootstrap.min.js"
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/"
    "bootstrap-datepicker.min.css": "bootstrap-datepicker/bootstrap-datepicker.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/"
    "bootstrap-datepicker.min.js": "bootstrap-datepicker/bootstrap-datepicker.min.js",
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/"
    "bootstrap-prefers-dark.css": "bootstrap-dark/bootstrap-prefers-dark.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": (
        "fontawesome/css/all.min.css"
    ),
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery/jquery.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": (
        "popper.js/popper.min.js"
    ),
    "https://cdn.jsdelivr.net/npm/vega@5": "vega/vega.min.js",
    "https://cdn.jsdelivr.net/npm/vega-lite@5": "vega-lite/vega-lite.min.js",
    "https://cdn.jsdelivr.net/npm/vega-embed@6": "vega-embed/vega-embed.min.js",
}

#: The logo and its dark-mode variant, served from S3 by GX: GX's own copies in static/images.
_S3_IMAGES = "https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/"

#: Set first in every page template: the relative path from the page to `<data docs>/static/`
#: (a validation page sits at validations/<suite, one folder per dot>/<run>/<time>/<batch>.html,
#: a suite page at expectations/<suite, one folder per dot>.html; as GX's top_navbar.j2).
_STATIC_DIR_PRELUDE = (
    '{%- if "ValidationResults" in renderer_type or "ProfilingResults" in renderer_type -%}'
    '{%- set crm_static_dir = ((expectation_suite_name.count(".") + 4) * "../") + "static/" -%}'
    '{%- elif "ExpectationSuite" in renderer_type -%}'
    '{%- set crm_static_dir = ((expectation_suite_name.count(".") + 1) * "../") + "static/" -%}'
    "{%- else -%}"
    '{%- set crm_static_dir = "./static/" -%}'
    "{%- endif -%}\n"
)

_PAGE_TEMPLATES = {"page.j2", "index_page.j2", "page_minimal.j2"}


def localise_template(name: str, source: str) -> str:
    """GX template `name`'s `source` with every CDN and S3 address replaced by a relative path
    into the page's static folder."""
    # longest first: no address is the prefix of a longer one that would then be cut
    for url in sorted(CDN_ASSETS, key=len, reverse=True):
        source = source.replace(url, "{{ crm_static_dir }}vendor/" + CDN_ASSETS[url])
    source = source.replace(
        f'{{% set static_images_dir = "{_S3_IMAGES}" -%}}',
        '{% set static_images_dir = crm_static_dir + "images/" -%}',
    )
    # the dark-mode logo (a background image in the default styles): GX's light one
    source = source.replace(
        f"url('{_S3_IMAGES}full_logo_dark.png')",
        "url('{{ crm_static_dir }}images/logo-long-vector.svg')",
    )
    # GX's favicon link counts one folder too few on validation pages
    source = source.replace(
        '{{ static_images_dir + "favicon.ico" }}', "{{ crm_static_dir }}images/favicon.ico"
    )
    if name in _PAGE_TEMPLATES:
        source = _STATIC_DIR_PRELUDE + source
    return source


class OfflineLoader(BaseLoader):
    """GX's template loader, each template localised (`localise_template`)."""

    def __init__(self, loader: BaseLoader) -> None:
        self.loader = loader

    def get_source(self, environment: Environment, template: str) -> Any:
        source, filename, uptodate = self.loader.get_source(environment, template)
        return localise_template(template, source), filename, uptodate


def copy_vendored_assets(docs_dir: Path) -> Path:
    """Copy the vendored styles, scripts and fonts to `<docs_dir>/static/vendor/`."""
    target = docs_dir / "static" / "vendor"
    shutil.copytree(VENDOR_DIR, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.md"))
    return target


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
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.env.loader = OfflineLoader(self.env.loader)  # type: ignore[attr-defined]

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
