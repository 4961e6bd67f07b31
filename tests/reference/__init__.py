"""An independent pandas implementation of the metric dictionary (docs/spec/metrics.md).

It reads the landing files itself (``landing``), resolves identities (``identity``) and
computes customer state, RFM and the monthly KPIs (``metrics``) without touching the
loader engine, the dbt models or the warehouse; the one input it may take from the
warehouse is the CLV model's scores as of D (validated on their own), for the value x
potential quadrant. The tests' oracle: the end-to-end test that recomputes
``marts.fct_kpi_monthly`` from the landing folder checks the warehouse against it (the
tests import it as ``reference``: tests/ is on sys.path). Reference: docs/reference.md.
"""

from reference.identity import resolve_identities
from reference.landing import read_landing
from reference.metrics import (
    QUADRANTS,
    SEGMENTS,
    ReferenceConfig,
    compute_kpis,
    customer_quadrants,
    customer_state,
    prepare,
    read_currency_rates,
    rfm_scores,
)

__all__ = [
    "QUADRANTS",
    "SEGMENTS",
    "ReferenceConfig",
    "compute_kpis",
    "customer_quadrants",
    "customer_state",
    "prepare",
    "read_currency_rates",
    "read_landing",
    "resolve_identities",
    "rfm_scores",
]
