"""An order status code outside the landing contract (a source starts sending `ON_HOLD`):
the night publishes, the line is staged as `unknown`, and the quality target check
`status_unknown_codes` reports one line (non-blocking). Real night on the small e2e
dataset (`crm run` in a subprocess)."""

from __future__ import annotations

import csv
import io
import shutil
from datetime import date
from pathlib import Path

import duckdb
import pytest
from support.e2e import crm

pytestmark = pytest.mark.xdist_group("e2e_unknown_status")

DAY = date(2026, 11, 1)
ORDER_NO = "UNKNOWN-STATUS-1"


def test_an_unknown_order_status_is_published_as_unknown_and_reported(
    crm_home: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    shutil.copytree(crm_home, home, symlinks=True)
    source = sorted((home / "landing" / "shop_orders").glob("*/*.csv"))[-1]
    header, *rows = list(csv.reader(io.StringIO(source.read_text(encoding="utf-8-sig"))))
    row = list(rows[0])
    row[header.index("order_no")] = ORDER_NO
    row[header.index("status")] = "ON_HOLD"
    target = home / "landing" / "shop_orders" / DAY.isoformat() / f"orders_{DAY:%Y%m%d}.csv"
    target.parent.mkdir(parents=True)
    with target.open("w", encoding="utf-8", newline="") as out:
        csv.writer(out).writerows([header, row])
    proc = crm(home, "run", "--date", DAY.isoformat())
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    with duckdb.connect(str(home / "serving" / "serving.duckdb"), read_only=True) as con:
        published = con.execute(
            "select status from fct_orders where source_order_id = ?", [ORDER_NO]
        ).fetchall()
    assert published == [("unknown",)]
    with duckdb.connect(str(home / "warehouse" / "warehouse.duckdb"), read_only=True) as con:
        reported = con.execute(
            "select severity, success, observed from quality.dq_results "
            "where expectation = 'status_unknown_codes' and as_of_date = ? "
            "order by checked_at desc limit 1",
            [DAY],
        ).fetchone()
    assert reported == ("target", False, 1.0)
