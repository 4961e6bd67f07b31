"""The day loop: simulate every day of history and period, deliver, write the truth."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path

from pipelines.generate.calendar import season_array, social_season_array
from pipelines.generate.customers import Profiles
from pipelines.generate.landing import Landing, SourceSpec
from pipelines.generate.orders import FRONTDESK_PHONES, Orders
from pipelines.generate.population import Population, Timeline
from pipelines.generate.presets import PRESETS, Rates
from pipelines.generate.service import Service
from pipelines.generate.social import Social
from pipelines.generate.textgen import Clock, PersonText
from pipelines.lib.settings import DEMO_MAPPINGS_DIR

#: The sources this generator writes, as described by their mappings.
SOURCES: dict[str, SourceSpec] = {
    "crm_members": SourceSpec(
        "crm_members", "customers", "csv", "members_{date}", encoding="gb18030",
        required=("会员编号", "更新时间"), malformed=True, truncate=True,
        dates=("更新时间", "注册时间", "出生日期"),
    ),
    "mall_members": SourceSpec(
        "mall_members", "customers", "jsonl", "mall_members_{date}",
        required=("member_id", "updated_at"), malformed=True, truncate=True, sparse=True,
        absent_key="real_name", dates=("updated_at", "created_at"),
    ),
    "shop_orders": SourceSpec(
        "shop_orders", "orders", "csv", "orders_{date}", bom=True,
        required=("order_no", "status", "qty", "unit_price"), malformed=True, truncate=True,
        dates=("order_time",),
    ),
    "helpdesk_events": SourceSpec(
        "helpdesk_events", "service_events", "csv", "helpdesk_{date}", delimiter="\t",
        required=("ticket_no", "event_time", "event"), malformed=True, truncate=True,
        dates=("event_time",),
    ),
    "social_interactions": SourceSpec(
        "social_interactions", "social_interactions", "parquet", "{part}_{date}",
        required=("msg_id", "open_id"), split_by="platform",
    ),
}  # fmt: skip
OWNED = [*SOURCES, "_truth", "_mappings"]


class GenerateError(ValueError):
    """The generator cannot run with these arguments; the message says what to change."""


@dataclass(frozen=True)
class GenerateResult:
    """What `generate` wrote."""

    preset: str
    seed: int
    out: Path
    start: date
    end: date
    days: int
    rows: dict[str, int]  # data rows written per source (re-deliveries not counted)
    files: list[Path] = field(default_factory=list)  # every file written, incl. truth
    bytes_written: int = 0
    seconds: float = 0.0


def resolve_period(preset: str, start: date | None, days: int | None) -> tuple[date, int]:
    if preset not in PRESETS:
        raise GenerateError(f"unknown preset {preset!r}: use one of {', '.join(PRESETS)}")
    p = PRESETS[preset]
    if days is not None and days < 1:
        raise GenerateError(f"--days must be at least 1 (got {days})")
    n = days if days is not None else p.days
    if start is None:
        start = p.end - timedelta(days=n - 1)
    return start, n


def _prepare_out(out: Path) -> None:
    """Refuse to write over folders this generator did not write; clear its own."""
    out.mkdir(parents=True, exist_ok=True)
    ours = (out / "_truth" / "defects.json").exists()
    clash = [name for name in SOURCES if (out / name).exists()]
    if clash and not ours:
        raise GenerateError(
            f"{out} already holds {', '.join(clash)} not written by the generator "
            "(no _truth/defects.json); choose an empty --out folder"
        )
    for name in OWNED:
        if (out / name).exists():
            shutil.rmtree(out / name)


def generate(
    preset: str,
    seed: int,
    out: Path,
    start: date | None = None,
    days: int | None = None,
    progress: bool = True,
    *,
    customers: int | None = None,
    history_days: int | None = None,
    rates: Rates | None = None,
) -> GenerateResult:
    """Write a landing folder of demo deliveries for `preset` (small, medium, large).

    `start`/`days` override the preset's period (default: it ends on the preset's fixed end
    date). `customers` and `history_days` scale the population and the pre-period history
    (used by tests). The same arguments always give byte-identical files.
    """
    t_start = time.perf_counter()
    start, n_days = resolve_period(preset, start, days)
    p = PRESETS[preset]
    rates = rates or Rates()
    n_customers = customers if customers is not None else p.customers
    hist = p.history_days if history_days is None else history_days
    out = Path(out)
    _prepare_out(out)

    timeline = Timeline(history=hist, days=n_days)
    t0 = start - timedelta(days=hist)
    k_total = timeline.total
    season = season_array(t0, k_total + 40)
    clock = Clock(t0, k_total + 40, before=1600)
    pop = Population(n_customers, timeline, season, rates, seed)
    text = PersonText(seed)
    landing = Landing(out, clock, k_total, hist, rates, seed, SOURCES)
    orders = Orders(pop, text, clock, landing, rates, seed, season)
    profiles = Profiles(pop, text, clock, landing, rates, seed)
    service = Service(pop, text, clock, landing, rates, seed, orders)
    social = Social(
        pop, text, clock, landing, rates, seed, orders, social_season_array(t0, k_total + 40)
    )

    with _progress(progress, k_total, preset) as advance:
        for k in range(k_total):
            orders.day(k)
            if k >= hist:
                if k == hist:
                    profiles.full_export()
                profiles.day(k)
                service.day(k)
                social.day(k)
                landing.flush(k)
            advance()
    social.finish()
    landing.close()

    mapping_dir = out / "_mappings"
    mapping_dir.mkdir(parents=True, exist_ok=True)
    for name in SOURCES:
        shutil.copyfile(DEMO_MAPPINGS_DIR / f"{name}.yaml", mapping_dir / f"{name}.yaml")
        landing.written.append(mapping_dir / f"{name}.yaml")
    end = start + timedelta(days=n_days - 1)
    truth = {
        "generator": {
            "preset": preset, "seed": seed, "start": start.isoformat(), "end": end.isoformat(),
            "days": n_days, "history_days": hist, "history_start": t0.isoformat(),
            "customers": pop.n_customers, "fans": pop.n_fans,
        },
        "rates": asdict(rates),
        "sources": {
            name: {**landing.totals[name], **dict(sorted(landing.extra[name].items()))}
            for name in SOURCES
        },
        "social": dict(sorted(social.truth.items())),
        "population": {
            "crm_members": int(pop.in_crm.sum()),
            "mall_members": int(pop.in_mall.sum()),
            "vip_segment": int(pop.is_vip_segment.sum()),
            "prospects": int((pop.is_customer & (pop.lam == 0)).sum()),
            "duplicate_registrations": int((pop.dup_day < hist + n_days).sum()),
            "duplicate_registrations_sharing_nothing": int(
                ((pop.dup_day < hist + n_days) & (pop.dup_style == 2)).sum()
            ),
        },
        "front_desk_phones": FRONTDESK_PHONES,
        "currencies": ["CNY", *rates.currencies],
        "identity_rows": landing.identity.total,
        "duplicate_files": landing.duplicates,
        "files": landing.files,
    }  # fmt: skip
    truth_path = out / "_truth" / "defects.json"
    truth_path.write_text(
        json.dumps(truth, ensure_ascii=False, indent=1, sort_keys=True, default=int)
    )
    landing.written += [truth_path, landing.identity.path]
    size = sum(f.stat().st_size for f in (truth_path, landing.identity.path))
    return GenerateResult(
        preset=preset, seed=seed, out=out, start=start, end=end, days=n_days,
        rows={name: landing.totals[name]["rows"] for name in SOURCES},
        files=landing.written, bytes_written=landing.bytes_written + size,
        seconds=round(time.perf_counter() - t_start, 2),
    )  # fmt: skip


class _progress:
    """A rich progress bar over simulated days (or nothing)."""

    def __init__(self, enabled: bool, total: int, preset: str) -> None:
        self.enabled, self.total, self.preset = enabled, total, preset

    def __enter__(self):  # noqa: ANN204
        if not self.enabled:
            return lambda: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        self._bar = Progress(
            "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), transient=False,
        )  # fmt: skip
        self._bar.start()
        task = self._bar.add_task(f"generating {self.preset} (days)", total=self.total)
        return lambda: self._bar.advance(task)

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self._bar.stop()
