"""The scaling benchmark's page (.bench/results/scale.md) from its results
(.bench/results/scale_*.json)."""

from __future__ import annotations

import json
from pathlib import Path

PRESETS = ("small", "medium", "large")
STAGES = ("ingest", "dbt", "CLV", "gates", "publish")
#: The two measured phases of each preset, with their labels in the tables.
PHASES = (
    ("full", "full build"),
    ("big_night", "a night of 5 deliveries"),
    ("night", "one night"),
)


def _phases(r: dict) -> list[tuple[str, str]]:
    """The phases of PHASES a result has (results of older runs have no big night)."""
    return [(name, label) for name, label in PHASES if name in r["phases"]]


OTHER_BENCHMARKS = (
    ("ingest_medium.md", "ingest", "the loader engine against DuckDB's own readers on the medium preset (rows/s, MB/s, peak RSS)"),
    ("quality.md", "quality", "the quality gate on a 2M-row synthetic warehouse"),
    ("quality_20m.md", "quality, 20M rows", "the quality gate at the large preset's scale"),
    ("clv.md", "clv", "the nightly BG/NBD + Gamma-Gamma fit on 2M synthetic customers"),
)  # fmt: skip

INTRO = """\
# Benchmarks

`make bench` (`python -m benchmarks`) runs every benchmark, each in a fresh process;
each writes its results into this folder (`.bench/results/`, not committed). Benchmarks
are not tests: nothing asserts a time. The machine is described with each result; figures
taken while other jobs shared the cores are higher than on a quiet machine. The targets,
where a night's time goes and why: [performance.md](../../docs/performance.md).

| benchmark | what | results |
|---|---|---|
| scale | the whole pipeline from empty and one night on top, at three sizes, against a DuckDB floor and a pandas peer | this page |
{others}

## Scaling: full build, one night, floor and peer

`python -m benchmarks.scale --presets small,medium,large` (part of `make bench`).
Per preset, in one run:

- **Full build from empty**: `crm backfill` over every delivery date but the last, in a
  fresh `CRM_HOME` (ingest of every delivery, then dbt, CLV, quality gates and publication
  once, as of the last day).
- **One night on top of that history**: `crm run --date <last delivery date>`.
- **Peak memory**: RSS of the process tree (the `crm` process and its children, dbt
  included), sampled from `/proc` every 0.2 s, and never below the kernel's maximum for
  the largest single process (`wait4`).
- **Time per stage**: ingest, dbt (`dbt build`: models and data tests), CLV, gates (the
  Great Expectations suites) and publish, summed over the Dagster steps of the runs (step
  start to end, from the run storage under `DAGSTER_HOME`: the same figures as the UI).
  "Outside steps" is the rest of the wall time: interpreter start, loading the Dagster
  definitions and the dbt manifest, run bookkeeping.
- **The floor**: DuckDB alone running one hand-written SQL script,
  [benchmarks/floor.sql](../../benchmarks/floor.sql), on a copy of the
  raw tables, as of the last date: identity resolution (phone / e-mail / unionid / account
  and social references, the super-node guard, connected components), customer state,
  RFM, and the customer and order KPIs of `marts.fct_kpi_monthly` for segment `all`
  (11 KPIs per month). It is a floor for that part only: the pipeline also builds the
  golden record, the order lines, service and social facts and their KPIs, the vip /
  lifecycle / quadrant / RF / channel segments and the KPI review, runs the dbt data tests and the
  quality gates, fits CLV and publishes. Agreement with the warehouse is checked on
  every run (below): a floor that computed something else would be no floor.
- **The pandas peer**: the same outputs in a straightforward pandas program,
  [benchmarks/peer.py](../../benchmarks/peer.py) (read the raw tables
  with DuckDB's `.df()`, then groupby / merge, scipy for the connected components, a loop
  over the months), in its own process, on the medium preset (`--peer-preset`).
- **Agreement**: KPI rows (month × KPI) whose value, numerator and denominator agree
  within 1e-9 (relative; absolute below 1) with `marts.fct_kpi_monthly` (segment `all`);
  customers whose state (first / last order, orders lifetime and 365 days, net revenue
  365 days and lifetime, recency, VIP, lifecycle stage, R / F / M scores, RFM segment)
  matches a customer of `marts.dim_customers` (compared as multisets: the warehouse's
  customer ids need not be computable outside it); identity records whose component
  (named by its smallest record id) is the same. `tests/test_bench_floor.py` asserts
  full agreement of the floor and the peer with the warehouse on the test dataset.
"""


def _mb(n: float | None) -> str:
    return "-" if n is None else f"{n / 1024 / 1024:,.0f}"


def _s(n: float | None) -> str:
    if n is None:
        return "-"
    return f"{n:,.1f}" if n < 100 else f"{n:,.0f}"


def _ratio(a: float | None, b: float | None) -> str:
    if not a or not b:
        return "-"
    return f"{a / b:,.2f}" if a / b < 10 else f"{a / b:,.0f}"


def _int(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def _agree(item: dict | None, key_total: str = "rows") -> str:
    if not item:
        return "-"
    if "in_both" in item:
        extra = ""
        if item["only_left"] or item["only_right"]:
            extra = f"; {item['only_left']:,} only ours, {item['only_right']:,} only theirs"
        return f"{item['agree']:,} of {item['rows']:,}{extra}"
    return f"{item['agree']:,} of {max(item['left'], item['right']):,}"


def load(results_dir: Path) -> dict[str, dict]:
    out = {}
    for preset in PRESETS:
        path = results_dir / f"scale_{preset}.json"
        if path.exists():
            out[preset] = json.loads(path.read_text(encoding="utf-8"))
    return out


def _pending(preset: str) -> str:
    return f"pending: not run yet (`python -m benchmarks.scale --presets {preset}`)"


def _machine_lines(results: dict[str, dict]) -> list[str]:
    lines = ["### Machine", ""]
    seen: dict[str, list[str]] = {}
    for preset, r in results.items():
        m = r["machine"]
        text = (
            f"{m['cpu']}, {m['cores']} cores ({m['cores_usable']} usable), {m['ram_gib']} GiB RAM; "
            f"{m['os']}; Python {m['python']}, DuckDB {m['duckdb']}, pandas {m['pandas']}, "
            f"Dagster {m['dagster']}, dbt-core {m['dbt-core']} + dbt-duckdb {m['dbt-duckdb']}; "
            f"code at commit {m['commit']}"
        )
        seen.setdefault(text, []).append(preset)
    for text, presets in seen.items():
        lines.append(f"- {', '.join(presets)}: {text}.")
    lines.append("")
    lines.append(
        "Mean 1-minute load average while each part ran (the machine's, other jobs included):"
    )
    lines.append("")
    for preset, r in results.items():
        parts = [("full build", r["phases"]["full"]), ("night", r["phases"]["night"])]
        parts += [("floor", r["floor"])] + ([("peer", r["peer"])] if r.get("peer") else [])
        loads = ", ".join(f"{label} {item.get('load_average', '-')}" for label, item in parts)
        cores = r["machine"]["cores_usable"]
        # the benchmark alone keeps about `cores` busy (dbt's 2 threads, the orchestrator,
        # the sampler): only a clearly higher load means that other jobs competed
        busy = max(float(item.get("load_average", 0)) for _, item in parts) > cores * 1.5
        note = (
            f": well above the {cores} cores, other jobs competed for the CPU and the times "
            "are higher than on a quiet machine (peak memory is not affected)"
            if busy
            else ""
        )
        lines.append(f"- {preset} (run on {r['date']}): {loads}{note}.")
        if r.get("note"):
            lines.append(f"  {r['note']}")
    lines.append("")
    return lines


def _other_benchmarks(results_dir: Path) -> str:
    """The rows of the intro's table for the other benchmarks whose results are in the folder."""
    return "\n".join(
        f"| {name} | {what} | [{link.split('/')[-1]}]({link}) |"
        for link, name, what in OTHER_BENCHMARKS
        if (results_dir / link).exists()
    )


def _reproduce_lines(results: dict[str, dict]) -> list[str]:
    lines = ["### Reproduce", ""]
    lines += [f"- {preset}: `{r['command']}`" for preset, r in results.items()]
    return [
        *lines,
        "",
        "The landing data is generated once into `.bench/<preset>/landing` (seed 7) and kept;",
        "the CRM_HOME of each run is recreated empty. Logs of each step are in `.bench/<preset>/`.",
        "",
    ]


def _preset_rows(results: dict[str, dict], row, columns: int) -> list[str]:
    """One row per preset: `row(preset, result)`, or "pending" and the `columns` - 2 empty
    cells of a preset without a result."""
    return [
        row(preset, results[preset])
        if preset in results
        else f"| {preset} | {_pending(preset)} " + "|" * (columns - 1)
        for preset in PRESETS
    ]


def _results_row(preset: str, r: dict) -> str:
    full, night, floor = r["phases"]["full"], r["phases"]["night"], r["floor"]
    peer = r.get("peer")
    return (
        f"| {preset} | {r['deliveries']['count']} ({r['deliveries']['first']} .. "
        f"{r['deliveries']['last']}) | {r['landing_mb']:,.0f} | {_int(sum(r['raw_rows'].values()))} | "
        f"{_s(full['seconds'])} | {_mb(full['peak_rss'])} | {_s(night['seconds'])} | "
        f"{_mb(night['peak_rss'])} | {_s(floor['script_seconds'])} | {_mb(floor['peak_rss'])} | "
        f"{_s(peer['seconds']) if peer else 'not run'} | {_mb(peer['peak_rss']) if peer else '-'} |"
    )


def _results_lines(results: dict[str, dict]) -> list[str]:
    lines = [
        "### Results",
        "",
        "| preset | deliveries | landing MB | raw rows | full build s | full peak RSS MiB | night s | night peak RSS MiB | floor s | floor peak RSS MiB | pandas peer s | peer peak RSS MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *_preset_rows(results, _results_row, 12),
    ]
    return [
        *lines,
        "",
        "Floor seconds: the SQL script only (the copy of the raw tables it reads is not counted;",
        "it is listed below). Peer seconds: reading the raw tables into pandas and computing.",
        "Peak RSS of the floor and the peer: their whole process (Python, DuckDB, pandas).",
        "",
    ]


def _growth_row(preset: str, r: dict, base: dict) -> str:
    phases = (
        ("full", "seconds"),
        ("full", "peak_rss"),
        ("night", "seconds"),
        ("night", "peak_rss"),
    )
    return (
        f"| {preset} | {_ratio(sum(r['raw_rows'].values()), sum(base['raw_rows'].values()))} | "
        + " | ".join(_ratio(r["phases"][ph][k], base["phases"][ph][k]) for ph, k in phases)
        + f" | {_ratio(r['floor']['script_seconds'], base['floor']['script_seconds'])} |"
    )


def _growth_lines(results: dict[str, dict]) -> list[str]:
    lines = [
        "### Growth (relative to small)",
        "",
        "| preset | raw rows | full build time | full build peak RSS | night time | night peak RSS | floor time |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    base = results.get("small")
    for preset in PRESETS:
        r = results.get(preset)
        if r is None or base is None:
            reason = _pending(preset if r is None else "small")
            lines.append(f"| {preset} | {reason} ||||||")
        else:
            lines.append(_growth_row(preset, r, base))
    return [*lines, ""]


def _stage_lines(results: dict[str, dict]) -> list[str]:
    lines = [
        "### Time per stage (seconds)",
        "",
        "| preset | phase | wall | " + " | ".join(STAGES) + " | outside steps | Dagster runs |",
        "|---|---|---:|" + "---:|" * len(STAGES) + "---:|---:|",
    ]
    for preset in PRESETS:
        r = results.get(preset)
        if r is None:
            lines.append(f"| {preset} | {_pending(preset)} |" + "|" * (len(STAGES) + 3))
            continue
        for name, label in _phases(r):
            p = r["phases"][name]
            stages = p["stages"]
            inside = sum(stages.values())
            lines.append(
                f"| {preset} | {label} | {_s(p['seconds'])} | "
                + " | ".join(_s(stages.get(s, 0.0)) for s in STAGES)
                + f" | {_s(p['seconds'] - inside)} | {p['runs']} |"
            )
    return [
        *lines,
        "",
        "The full build is two Dagster runs: the ingest job over every delivery but the one it",
        "builds as of (with the raw-table gates), then the nightly job for that date; the night",
        "is one nightly run. dbt includes its data tests; gates are the Great Expectations",
        "suites (raw tables, facts, customers, KPIs).",
        "",
    ]


def _peak_row(preset: str, label: str, p: dict) -> str:
    parts = p.get("peak_processes")
    if not parts:
        return f"| {preset} | {label} | - | not recorded in this run |"
    shown = ", ".join(f"{q['process']}: {_mb(q['rss'])}" for q in parts[:6])
    return f"| {preset} | {label} | {_s(p.get('peak_at_seconds'))} | {shown} |"


def _peak_lines(results: dict[str, dict]) -> list[str]:
    lines = [
        "### What made up each peak",
        "",
        "The processes of the tree at the sample of the largest sum (those of 16 MiB or more).",
        "",
        "| preset | phase | peak at (s) | processes (MiB) |",
        "|---|---|---:|---|",
    ]
    for preset in PRESETS:
        r = results.get(preset)
        if r is not None:
            lines += [_peak_row(preset, label, r["phases"][name]) for name, label in _phases(r)]
    return [*lines, ""]


def _ratio_row(preset: str, r: dict) -> str:
    full, night, floor = r["phases"]["full"], r["phases"]["night"], r["floor"]
    peer = r.get("peer")
    full_core = full["stages"]["dbt"] + full["stages"]["gates"]
    night_core = night["stages"]["dbt"] + night["stages"]["gates"]
    return (
        f"| {preset} | {_ratio(night['seconds'], full['seconds'])} | "
        f"{_ratio(night['peak_rss'], full['peak_rss'])} | "
        f"{_ratio(full_core, floor['script_seconds'])} | "
        f"{_ratio(night_core, floor['script_seconds'])} | "
        f"{_ratio(peer['seconds'], floor['script_seconds']) if peer else 'not run'} | "
        f"{_ratio(peer['seconds'], full_core) if peer else 'not run'} | "
        f"{_ratio(peer['peak_rss'], full['peak_rss']) if peer else 'not run'} |"
    )


def _ratio_lines(results: dict[str, dict]) -> list[str]:
    lines = [
        "### Ratios",
        "",
        "| preset | night / full (time) | night / full (peak RSS) | full build dbt + gates / floor | night dbt + gates / floor | pandas peer / floor | pandas peer / full build dbt + gates | peer peak RSS / full build peak RSS |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        *_preset_rows(results, _ratio_row, 8),
    ]
    return [
        *lines,
        "",
        'dbt + gates against the floor compares a larger job with a smaller one (see "The',
        'floor" above): the ratio bounds what rewriting the covered part by hand could save,',
        "not the cost of the uncovered rest. On a shared machine the parts of one run see",
        "different loads (see Machine): ratios of times are then approximate.",
        "",
    ]


def _target_row(preset: str, r: dict) -> str:
    full, night = r["phases"]["full"], r["phases"]["night"]
    big = r["phases"].get("big_night")
    proxy = sum(full["stages"][s] for s in ("dbt", "gates", "publish"))
    share = night["seconds"] / full["seconds"] if full["seconds"] else None
    return (
        f"| {preset} | {_s(night['seconds'])} | "
        f"{f'{share:.0%}' if share is not None else '-'} | "
        f"{_s(big['seconds']) if big else 'not run'} | "
        f"{_ratio(big['seconds'], night['seconds']) if big else '-'} | "
        f"{_ratio(full['seconds'], r['floor']['script_seconds'])} | "
        f"{_s(proxy)} | {_ratio(night['seconds'], proxy)} |"
    )


def _target_lines(results: dict[str, dict]) -> list[str]:
    lines = [
        "### The night against its targets",
        "",
        "| preset | night s | night / full build | night of 5 deliveries s | 5 deliveries / 1 | full build / floor | rebuilt from scratch (proxy) s | night / proxy |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        *_preset_rows(results, _target_row, 8),
    ]
    return [
        *lines,
        "",
        "Targets at large ([performance.md](../../docs/performance.md)): night at most 150 s",
        "and 12 % of the full build; the full build at most 3 × the floor (this floor covers",
        "identity, customer state and the order KPIs only, not every published output); the",
        "night's time growing with its delivery, not with the history. \"Rebuilt from",
        'scratch" is what a team rebuilding the same marts every night would spend: the',
        "full build's dbt, gates and publication.",
        "",
    ]


def _agreement_row(preset: str, label: str, item: dict) -> str:
    a = item["agreement"]
    vs_floor = "-"
    if "kpis_vs_floor" in a:
        vs_floor = (
            f"{_agree(a['kpis_vs_floor'])} / {_agree(a['customers_vs_floor'])} / "
            f"{_agree(a['identity_vs_floor'])}"
        )
    return (
        f"| {preset} | {label} | {_agree(a['kpis_vs_warehouse'])} | "
        f"{_agree(a['customers_vs_warehouse'])} | {_agree(a.get('identity_vs_warehouse'))} | "
        f"{vs_floor} |"
    )


def _agreement_lines(results: dict[str, dict]) -> list[str]:
    lines = [
        "### Agreement",
        "",
        "| preset | implementation | KPI rows agreeing with fct_kpi_monthly | customers agreeing with dim_customers | identity records agreeing | agreement with the floor (KPI rows / customers / records) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for preset in PRESETS:
        r = results.get(preset)
        if r is None:
            lines.append(f"| {preset} | {_pending(preset)} |||||")
            continue
        implementations = (("floor (SQL)", r["floor"]), ("pandas peer", r.get("peer")))
        lines += [_agreement_row(preset, label, item) for label, item in implementations if item]
    return [
        *lines,
        "",
        "The warehouse compared is the one after the night (as of the last date, its older KPI",
        "months frozen by the incremental build); the floor and the peer compute everything",
        "afresh as of that date.",
        "",
    ]


def _floor_step_lines(results: dict[str, dict]) -> list[str]:
    lines = ["### The floor's heaviest statements (seconds)", ""]
    for preset, r in results.items():
        steps = sorted(r["floor"]["steps"].items(), key=lambda kv: -kv[1])[:6]
        listed = ", ".join(f"`{name}` {seconds:.2f}" for name, seconds in steps)
        lines.append(
            f"- {preset}: {listed}; copying the raw tables into the floor's DuckDB file "
            f"{r['floor']['copy_seconds']:.1f} s (not counted)."
        )
    return [*lines, ""]


def _invocation_line(preset: str, name: str, inv: dict) -> str:
    per_type = ", ".join(f"{k} {v:.1f}" for k, v in inv["execution_by_type"].items())
    line = f"- {preset}, `{name.split('-')[0]}`: {inv['elapsed']:.1f} wall; {per_type}"
    chain = inv.get("critical_path")
    if chain:
        line += (
            f"; critical path {chain['chain_with_tests']:.1f} "
            f"({chain['chain_of_models']:.1f} if data tests took no time), so at least "
            f"{chain['lower_bound']:.1f} on {chain['threads']} threads "
            f"({chain['lower_bound_without_tests']:.1f} without tests)"
        )
    return line + "."


def _slowest_lines(preset: str, profile: dict) -> list[str]:
    def listed(items: list[dict]) -> str:
        return ", ".join(f"`{_node_name(item['node'])}` {item['seconds']:.1f}" for item in items)

    lines = [f"- {preset}, slowest nodes: {listed(profile['slowest'])}."]
    if profile.get("slowest_tests"):
        lines.append(f"- {preset}, slowest data tests: {listed(profile['slowest_tests'])}.")
    return lines


def _dbt_profile_lines(results: dict[str, dict]) -> list[str]:
    profiled = [
        (p, r["phases"]["night"]["dbt_profile"])
        for p, r in results.items()
        if r["phases"]["night"].get("dbt_profile", {}).get("invocations")
    ]
    if not profiled:
        return []
    lines = [
        "### Where the night's dbt time goes (seconds)",
        "",
        "From dbt's run_results.json of the night's invocations: wall time, execution time",
        "per resource type (2 threads: the sums exceed the wall time), the critical path",
        "and the slowest nodes. The critical path is the longest chain of nodes that `dbt",
        "build` runs one after the other (a model waits for its parents and their data",
        "tests), by the run's execution times "
        "([critical_path.py](../../benchmarks/critical_path.py)); with the summed",
        "time over the threads it bounds the invocation's node time from below, at that",
        "run's speed, whatever the scheduling.",
        "",
    ]
    for preset, profile in profiled:
        lines += [
            _invocation_line(preset, name, inv) for name, inv in profile["invocations"].items()
        ]
        lines += _slowest_lines(preset, profile)
    return [*lines, ""]


def _peer_time_lines(results: dict[str, dict]) -> list[str]:
    peers = [(p, r["peer"]) for p, r in results.items() if r.get("peer")]
    if not peers:
        return []
    lines = ["### The peer's time", ""]
    for preset, peer in peers:
        lines.append(
            f"- {preset}: reading the raw tables into pandas {peer['read_seconds']:.1f} s, "
            f"computing {peer['compute_seconds']:.1f} s."
        )
    return [*lines, ""]


#: The sections of the page after the introduction, in order; each ends with a blank line.
SECTIONS = (
    _reproduce_lines,
    _machine_lines,
    _results_lines,
    _growth_lines,
    _stage_lines,
    _peak_lines,
    _ratio_lines,
    _target_lines,
    _agreement_lines,
    _floor_step_lines,
    _dbt_profile_lines,
    _peer_time_lines,
)


def render(results_dir: Path) -> str:
    """The page: the introduction, then every section from the results in the folder."""
    results = load(results_dir)
    lines = [INTRO.format(others=_other_benchmarks(results_dir))]
    if not results:
        lines.append("No results yet: run the command above.\n")
        return "\n".join(lines)
    for section in SECTIONS:
        lines += section(results)
    return "\n".join(lines)


def _node_name(unique_id: str) -> str:
    """A dbt node's name in the report: the model's name, or the data test's (its last part
    is a hash for generic tests)."""
    parts = unique_id.split(".")
    return parts[-1] if parts[0] in ("model", "seed", "snapshot") else parts[2]
