"""The GX Data Docs and the dbt docs render with the network off: every style, script and
font they load is a local file, the page is styled by them, and no table is left empty.

Headless Chromium opens each page with every host name resolving to nothing and a proxy
that does not exist (tests/support/browser.py `render_offline`); the page's own script
reports what it fetched (the resource timing list and every src/href), a computed style,
whether jQuery loaded and the rows of every table.

Before the styles and scripts were vendored, the Data Docs index offline was a page in
Times New Roman (no Bootstrap), its two tables empty (bootstrap-table fills them from
JavaScript) and 17 CDN addresses requested.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from support.browser import ensure_chromium, render_offline
from test_quality import AS_OF, build_warehouse

from pipelines.quality.docs_view import CDN_ASSETS, VENDOR_DIR
from pipelines.quality.runner import run_suite

#: Bootstrap 4.3.1's `.pl-5` (GX's page container): 3rem at the default 16 px font size.
BOOTSTRAP_PL5 = "48px"


@pytest.fixture(scope="module")
def chromium() -> str:
    binary, _ = ensure_chromium()  # installs Debian's chromium if missing; never skips
    return binary


def assert_offline(seen: dict, page: Path, *, files_exist: bool = True) -> None:
    """Nothing left the machine, no top-level table empty, and (`files_exist`) every file
    the page loads or names in a src/href exists. Not for the dbt docs: dbt's page asks for
    files named by its own uninterpolated placeholders (an Angular `src="{{ getIcon(...) }}"`,
    a favicon `${require(...)}`), local and harmless, that exist nowhere."""
    urls = seen["resources"] + seen["references"]
    remote = [url for url in urls if not url.startswith(("file:", "data:"))]
    assert remote == [], f"{page} requests {remote[:5]}"
    local = urls if files_exist else []
    missing = [
        url
        for url in local
        if url.startswith("file:") and not Path(unquote(urlparse(url).path)).exists()
    ]
    assert missing == [], f"{page} refers to missing files {missing[:5]}"
    empty = [t["id"] for t in seen["tables"] if not t["nested"] and t["rows"] == 0]
    assert empty == [], f"{page}: empty tables {empty}"


def assert_data_docs_page(page: Path) -> dict:
    seen = render_offline(page, selector=".container-fluid")
    assert_offline(seen, page)
    assert seen["tables"], f"{page} has no table"
    # styled by the vendored Bootstrap; its scripts and Font Awesome's font loaded
    assert seen["style"]["paddingLeft"] == BOOTSTRAP_PL5, seen["style"]
    assert "Times New Roman" not in seen["style"]["fontFamily"]
    assert seen["jquery"]
    if re.search(r'class="[^"]*\bfa-', page.read_text(encoding="utf-8")):  # icons shown
        fonts = {f["family"] for f in seen["fonts"] if f["status"] == "loaded"}
        assert "Font Awesome 6 Free" in fonts, seen["fonts"]
    return seen


def data_docs_pages(docs: Path) -> list[Path]:
    """The index, one validation page and one suite page."""
    validation = sorted((docs / "validations").rglob("*.html"))[0]
    suite = sorted((docs / "expectations").rglob("*.html"))[0]
    return [docs / "index.html", validation, suite]


def test_every_cdn_address_has_a_vendored_file() -> None:
    for url, name in CDN_ASSETS.items():
        assert (VENDOR_DIR / name).is_file(), f"{url}: {VENDOR_DIR / name} missing"


def test_data_docs_render_offline(chromium, tmp_path: Path) -> None:
    warehouse = build_warehouse(tmp_path / "warehouse.duckdb")
    docs = tmp_path / "reports" / "data_docs"
    # two suites: the index lists two validations
    for suite in ("raw_orders", "fct_orders"):
        run_suite(warehouse, suite, AS_OF, "run-offline", docs_dir=docs)
    for page in docs.rglob("*.html"):
        html = page.read_text(encoding="utf-8")
        loaded = re.findall(r'(?:src|href)="(https?://[^"]+)"', html)
        # links a reader may follow are fine; nothing the page loads is remote
        assert [u for u in loaded if "greatexpectations.io" not in u] == [], page
        assert "url('http" not in html, page
    index = assert_data_docs_page(docs / "index.html")
    # filled by bootstrap-table: both validations; the suite of the last run (the suites are
    # kept in each run's ephemeral context, the validations on disk)
    rows = {t["id"]: t["rows"] for t in index["tables"] if not t["nested"]}
    assert rows == {
        "section-1-content-block-2-1-body-table": 2,
        "section-1-content-block-2-2-body-table": 1,
    }
    for page in data_docs_pages(docs)[1:]:
        assert_data_docs_page(page)


@pytest.mark.slow
@pytest.mark.xdist_group("e2e")
def test_published_docs_render_offline(chromium, crm_home: Path) -> None:
    """The Data Docs and the dbt docs a night publishes."""
    for page in data_docs_pages(crm_home / "reports" / "data_docs"):
        assert_data_docs_page(page)

    dbt_docs = crm_home / "docs" / "dbt" / "index.html"
    overview = render_offline(dbt_docs, selector=".app-body")
    assert_offline(overview, dbt_docs, files_exist=False)
    assert overview["style"]["position"] == "relative"  # dbt docs' own styles
    # the project's overview page, not dbt's "Welcome!"
    assert "CRM analytics warehouse" in overview["text"]
    model = render_offline(
        dbt_docs, selector=".app-body", fragment="!/model/model.crm_warehouse.dim_customers"
    )
    assert_offline(model, dbt_docs, files_exist=False)
    # the columns table of dim_customers, one row per column at least
    assert max(t["rows"] for t in model["tables"]) >= 20
    assert "crm-data-team" in model["text"]  # the owner (meta.owner) in the model's details
