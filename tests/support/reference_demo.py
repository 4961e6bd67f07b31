"""The pandas reference of the e2e backfill's deliveries, and the comparison every reference
test applies (counts exactly, the rest within 1e-9 relative, NULL equal only to NULL)."""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path

import pandas as pd
from reference.landing import read_landing
from reference.metrics import Prepared, ReferenceConfig, prepare, read_currency_rates

from support.e2e import END

REPO = Path(__file__).resolve().parents[2]
MAPPINGS = REPO / "pipelines" / "ingest" / "mappings" / "demo"
SEEDS = REPO / "dbt_project" / "seeds"
RATES = SEEDS / "currency_rates.csv"
REL_TOL = 1e-9


def prepared_reference(home: Path, as_of: date = END) -> Prepared:
    """The reference's staging and identity resolution of the landing files of `home`."""
    raw = read_landing(home / "landing", MAPPINGS, as_of)
    return prepare(raw, ReferenceConfig(as_of=as_of, currency_rates=read_currency_rates(RATES)))


def same(a: object, b: object) -> bool:
    """Equal within REL_TOL; NULL (None, NaN or pandas NA) equals NULL only."""
    a_null, b_null = bool(pd.isna(a)), bool(pd.isna(b))
    if a_null or b_null:
        return a_null and b_null
    return math.isclose(float(a), float(b), rel_tol=REL_TOL, abs_tol=REL_TOL)
