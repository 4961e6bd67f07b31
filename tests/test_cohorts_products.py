"""Cohorts and products outside the warehouse: the generator's product affinities (its own
random stream, lift above 1 in the generated baskets), the retention heat map (svg.heat_map)
and the review's "Retention" section in both languages. The marts themselves: dbt unit tests
(dbt_project/models/marts/retention, products) and tests/test_reference_cohorts.py."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pytest

from pipelines.generate import generate, vocab
from pipelines.generate.orders import AFFINITY_RATE, Catalog
from pipelines.generate.textgen import rng_for
from pipelines.publish import svg
from pipelines.publish.review_retention import MONTHS_SHOWN, retention_section


def test_affinity_partners_are_symmetric_and_only_later_lines_change() -> None:
    cat = Catalog()
    names = cat.name.to_pylist()
    for a, b in vocab.AFFINITIES:
        i, j = names.index(a), names.index(b)
        assert cat.partner[i] == j and cat.partner[j] == i
    assert (cat.partner >= 0).sum() == 2 * len(vocab.AFFINITIES)
    shampoo, conditioner = names.index("洗发水 400ml"), names.index("护发素 400ml")
    other = next(k for k in range(len(names)) if cat.partner[k] < 0)
    # 20,000 two-line orders opening with shampoo, then another product
    n = 20_000
    prod = np.tile([shampoo, other], n)
    line_no = np.tile([1, 2], n)
    out = cat.pair_up(prod, line_no, rng_for(42, "product_affinity", 0))
    assert (out[0::2] == shampoo).all()  # a first line never changes
    share = (out[1::2] == conditioner).mean()
    assert share == pytest.approx(AFFINITY_RATE, abs=0.02)
    assert set(np.unique(out[1::2])) == {other, conditioner}
    # a line after a product without partner never changes
    plain = np.tile([other, other], 100)
    assert (cat.pair_up(plain, np.tile([1, 2], 100), np.random.default_rng(1)) == plain).all()


def test_generated_baskets_show_the_affinities(tmp_path: Path) -> None:
    generate("small", 7, tmp_path, days=24, progress=False, customers=1500, history_days=60)
    con = duckdb.connect()
    con.sql(
        f"create view lines as select * from read_csv('{tmp_path}/shop_orders/*/*.csv', "
        "header=true, all_varchar=true, union_by_name=true)"
    )
    con.sql(
        "create view baskets as select distinct order_no, item_name from lines "
        "where status != 'CANCEL'"
    )
    (n,) = con.execute("select count(distinct order_no) from baskets").fetchall()[0]
    per = dict(con.execute("select item_name, count(*) from baskets group by 1").fetchall())
    pairs = dict(
        ((a, b), c)
        for a, b, c in con.execute(
            "select x.item_name, y.item_name, count(*) from baskets as x join baskets as y "
            "on x.order_no = y.order_no and x.item_name < y.item_name group by 1, 2"
        ).fetchall()
    )
    lifts = []
    for a, b in vocab.AFFINITIES:
        key = (a, b) if a < b else (b, a)
        if pairs.get(key, 0) >= 5:
            lifts.append(pairs[key] * n / (per[a] * per[b]))
    # which pairs reach 5 baskets is chance: 24 days give several (seed 7: six, lifts 3.8-17)
    assert len(lifts) >= 3, lifts
    assert min(lifts) > 2, lifts


def test_heat_map_colours_cells_and_leaves_missing_ones_empty() -> None:
    markup = svg.heat_map(
        ["2026-01 (10)", "2026-02 <5>"],
        ["0", "1", "2"],
        [[1.0, 0.5, 0.25], [1.0, 0.2, None]],
        label="Retention & more",
        scale_max=0.5,
    )
    root = ET.fromstring(str(markup))
    cells = [el for el in root.iter("rect") if "cell" in (el.get("class") or "").split()]
    assert len(cells) == 5  # the missing cell is not drawn
    fills = {(c.get("data-row"), c.get("data-column")): c.get("fill") for c in cells}
    # at or above scale_max: the full colour; 0.25 of 0.5: half-way from #f6f8fa to #1f6feb
    assert fills[("0", "1")] == fills[("0", "0")] == svg.PALETTE[0]
    assert fills[("0", "2")] == "#8ab4f2"
    texts = [el.text for el in root.iter("text") if el.get("class") == "value"]
    assert texts == ["100%", "50%", "25%", "100%", "20%"]
    assert root.get("aria-label") == "Retention & more"
    assert "2026-02 <5>" in [el.text for el in root.iter("text")]  # escaped, parsed back
    empty = svg.heat_map([], [], [], empty_text="Nothing")
    assert "Nothing" in str(empty)


@pytest.mark.parametrize(("language", "title"), [("en", "Retention"), ("zh", "留存")])
def test_retention_section_in_both_languages(language: str, title: str) -> None:
    rows = [
        {"cohort_month": date(2026, 9, 1), "months_since_first": 0, "cohort_customers": 1200,
         "active_share": 1.0},
        {"cohort_month": date(2026, 9, 1), "months_since_first": 1, "cohort_customers": 1200,
         "active_share": 0.13},
        {"cohort_month": date(2026, 10, 1), "months_since_first": 0, "cohort_customers": 900,
         "active_share": 1.0},
    ]  # fmt: skip
    section = retention_section(rows, language)
    assert section is not None and section["title"] == title
    root = ET.fromstring(str(section["chart"]))
    labels = [el.text for el in root.iter("text") if el.get("class") == "y-label"]
    assert labels == ["2026-09 (1,200)", "2026-10 (900)"]
    columns = [el.text for el in root.iter("text") if el.get("class") == "x-label"]
    assert columns == [str(m) for m in range(MONTHS_SHOWN + 1)]
    values = [el.text for el in root.iter("text") if el.get("class") == "value"]
    assert values == ["100%", "13%", "100%"]
    assert retention_section([], language) is None
