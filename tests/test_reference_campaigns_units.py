"""The pandas reference of fct_campaign_performance (tests/reference/metrics/campaigns.py)
on the hand-computed case of the dbt unit test `test_campaign_performance`
(dbt_project/models/marts/campaigns/_campaigns__models.yml): the same figures, reached
from the landing rows through identity resolution."""

from __future__ import annotations

import math

from reference.metrics.campaigns import campaign_performance
from test_reference_units import _order, _prepared, _profile, _si

# uplift, CI low, CI high computed by hand (see the dbt unit test's description)
EXPECTED = {
    # pushes, reached, responded, orders, revenue, converted, hold-out, hold-out converted,
    # uplift, low, high, dormant reached, reactivated
    "A|dormant": (1, 1, 0, 0, 0.0, 1, 2, 1, 0.5, -0.19295191217483898, 1.192951912174839, 1, 1),
    "A|prospect": (1, 1, 1, 0, 0.0, 0, 1, 1, -1.0, -1.0, -1.0, 0, 0),
    "A|all": (2, 2, 1, 0, 0.0, 1, 3, 2, -1 / 6, -1.041157866063989, 0.7078245327306558, 1, 1),
    "B|dormant": (1, 1, 1, 1, 120.5, 1, 2, 1, 0.5, -0.19295191217483898, 1.192951912174839, 1, 1),
    "B|all": (1, 1, 1, 1, 120.5, 1, 2, 1, 0.5, -0.19295191217483898, 1.192951912174839, 1, 1),
    "C|new": (1, 1, 0, 0, 0.0, 0, 1, 0, 0.0, 0.0, 0.0, 0, 0),
    "C|all": (1, 1, 0, 0, 0.0, 0, 1, 0, 0.0, 0.0, 0.0, 0, 0),
}
COLUMNS = ("pushes", "reached_customers", "responded_pushes", "attributed_orders",
           "attributed_net_revenue", "converted_customers", "holdout_customers",
           "holdout_converted_customers", "uplift", "uplift_ci_low", "uplift_ci_high",
           "dormant_reached_customers", "reactivated_customers")  # fmt: skip


def test_campaign_performance_by_hand() -> None:
    orders = [
        _order("o0", "c1", "2026-01-10"),
        _order("o4a", "c4", "2026-02-01"),
        _order("o5a", "c5", "2026-01-20"),
        _order("o1", "c1", "2026-09-10", price=120.5),  # after A and B: B's (the later)
        _order("o1x", "c1", "2026-09-11", price=999.0, status="cancelled"),
        _order("o3", "c3", "2026-09-03"),
        _order("o4", "c4", "2026-09-20"),
        _order("o2", "c2", "2026-10-02"),  # 31 days after A's push: nobody's
    ]
    profiles = [_profile(r, unionid=f"U{r}") for r in ("c1", "c2", "c3", "c4", "c5")]

    def si(iid, ref, at, direction, kind, campaign=None):  # noqa: ANN001, ANN202
        return {**_si(iid, f"o{ref}", at, direction, kind, campaign_id=campaign),
                "unionid": f"U{ref}"}  # fmt: skip

    social = [
        si("f3", "c3", "2026-08-01 02:00:00", "inbound", "follow"),
        si("f4", "c4", "2026-08-01 02:00:00", "inbound", "follow"),
        si("f5", "c5", "2026-08-01 02:00:00", "inbound", "follow"),
        si("pa1", "c1", "2026-09-01 02:00:00", "outbound", "campaign_push", "A"),
        si("pa2", "c2", "2026-09-01 02:00:00", "outbound", "campaign_push", "A"),
        si("ka2", "c2", "2026-09-01 05:00:00", "inbound", "click", "A"),
        si("pb1", "c1", "2026-09-05 02:00:00", "outbound", "campaign_push", "B"),
        si("pc2", "c2", "2026-10-20 02:00:00", "outbound", "campaign_push", "C"),
    ]
    out = campaign_performance(_prepared(orders, profiles, social=social))
    got = {row["campaign_segment_id"]: tuple(row[c] for c in COLUMNS) for _, row in out.iterrows()}
    assert set(got) == set(EXPECTED)
    for key, expected in EXPECTED.items():
        assert all(
            math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=1e-12)
            for a, b in zip(got[key], expected, strict=True)
        ), (key, got[key], expected)
    assert out["is_small_base"].all()
