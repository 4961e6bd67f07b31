"""Run the expectation suites on the warehouse DuckDB file.

GX validates inside DuckDB (its metric SQL is aggregate queries pushed down to the engine;
no table is loaded into Python). For every expectation the runner records the observed
value, the threshold, success and severity; for a failed blocking check it adds up to
`SAMPLE_LIMIT` offending key values (duplicated keys, or identifying columns of rows with a
NULL key) so the run says which check and which rows. Results are appended to
`quality.dq_results` (a trend) and rendered as GX Data Docs under
`$CRM_HOME/reports/data_docs/`.

GX's `unexpected_rows_expectation` runs its query twice (once for the rows, once for their
count). The runner runs each such query once, into a table of an in-memory database
attached to the connection (`crm_gate_rows`: nothing is written to the warehouse file, nothing outlives the
process), and GX reads that table instead: the reconciliation of fct_orders with staging and
the uniqueness checks of the facts are most of the gate's time (large night: the gate's SQL
32.9 -> 19.6 s). The query as written stays in the expectation's meta
(`unexpected_rows_query`). Where the query fails, GX runs it itself as before and reports
the error.

    run_suite(db_path_or_con, "fct_orders", as_of, run_id) -> SuiteResult
    run_gate(db_path_or_con, as_of, run_id) -> GateResult   (every suite; blocking_failed)
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time
import uuid
import warnings
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb

from pipelines.lib.duck import connect
from pipelines.lib.settings import EXPECTATIONS_DIR
from pipelines.quality.gx_duckdb import add_warehouse_datasource, gx_context
from pipelines.quality.suites import (
    ExpectationSpec,
    SuiteSpec,
    load_suite,
    load_suites,
    render,
    runtime_parameters,
)

SAMPLE_LIMIT = 20
DATASOURCE = "warehouse"
#: The in-memory database holding the rows of `unexpected_rows_expectation` queries while a
#: suite runs (see the module docstring).
ROWS_DATABASE = "crm_gate_rows"

DQ_RESULTS_DDL = """
    create schema if not exists quality;
    create table if not exists quality.dq_results (
        run_id varchar, checked_at timestamp, as_of_date date, suite varchar,
        table_name varchar, expectation varchar, column_name varchar, severity varchar,
        observed double, threshold double, success boolean, details json
    );
"""


@dataclass
class ExpectationOutcome:
    """One expectation of one suite run."""

    check: str
    expectation_type: str
    column: str | None
    severity: str
    success: bool
    observed: float | None
    threshold: float | None
    details: dict[str, Any] = field(default_factory=dict)
    sample: list[Any] = field(default_factory=list)
    #: why the expectation was not evaluated (no source of its entity); None: evaluated
    skipped: str | None = None

    @classmethod
    def of(cls, exp: Any, **outcome: Any) -> ExpectationOutcome:
        """The outcome of expectation ``exp`` (its check, type, column and severity)."""
        return cls(
            check=exp.check,
            expectation_type=exp.type,
            column=exp.column,
            severity=exp.severity,
            **outcome,
        )

    def describe(self) -> str:
        if self.skipped:
            return f"{self.check} [{self.severity}] skipped: {self.skipped}"
        text = (
            f"{self.check} [{self.severity}] observed={_fmt(self.observed)} "
            f"threshold={_fmt(self.threshold)}"
        )
        if self.details.get("error"):
            text += f" error={self.details['error']}"
        if self.sample:
            text += f" sample={json.dumps(self.sample[:5], default=str, ensure_ascii=False)}"
        return text


@dataclass
class SuiteResult:
    suite: str
    table: str
    asset_key: tuple[str, ...]
    as_of: date
    run_id: str
    outcomes: list[ExpectationOutcome]
    seconds: float
    gx_result: Any = None

    @property
    def blocking_failed(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if o.severity == "blocking" and not o.success]

    @property
    def target_failed(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if o.severity == "target" and not o.success]

    @property
    def skipped(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if o.skipped]

    @property
    def passed(self) -> bool:
        """No blocking failure (target misses are recorded, never block)."""
        return not self.blocking_failed

    def outcome(self, check: str) -> ExpectationOutcome:
        for item in self.outcomes:
            if item.check == check:
                return item
        raise KeyError(f"suite {self.suite} has no check {check!r}")


@dataclass
class GateResult:
    run_id: str
    as_of: date
    suites: list[SuiteResult]
    seconds: float
    docs_index: Path | None = None

    @property
    def blocking_failed(self) -> list[str]:
        """`suite.check` of every failed blocking expectation."""
        return [f"{s.suite}.{o.check}" for s in self.suites for o in s.blocking_failed]

    @property
    def passed(self) -> bool:
        return not self.blocking_failed

    def summary(self) -> str:
        lines = [
            f"quality gate as of {self.as_of} (run {self.run_id}): "
            f"{'PASSED' if self.passed else 'BLOCKED'} in {self.seconds:.1f}s"
        ]
        for suite in self.suites:
            for item in suite.blocking_failed + suite.target_failed:
                lines.append(f"  {suite.suite}: {item.describe()}")
            if suite.skipped:
                lines.append(
                    f"  {suite.suite}: {len(suite.skipped)} expectation(s) skipped: "
                    f"{suite.skipped[0].skipped}"
                )
        return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None if value is None else float(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _qualified(spec: SuiteSpec) -> str:
    return f"{_quote(spec.schema)}.{_quote(spec.table_name)}"


def _table_exists(con: duckdb.DuckDBPyConnection, spec: SuiteSpec) -> bool:
    row = con.execute(
        "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
        [spec.schema, spec.table_name],
    ).fetchone()
    return bool(row and row[0])


def _resolve(value: Any, params: dict[str, str]) -> Any:
    if isinstance(value, dict) and "$PARAMETER" in value:
        return params.get(value["$PARAMETER"])
    return value


def observed_and_threshold(
    exp: ExpectationSpec, result: dict[str, Any], params: dict[str, str]
) -> tuple[float | None, float | None, dict[str, Any]]:
    """The number a reader compares with the threshold, per kind of expectation.

    - column map expectations (not null, unique, in set, between, ...): observed = share of
      rows that meet the expectation (GX: 1 − unexpected_percent), threshold = `mostly` (1.0)
    - `unexpected_rows_expectation`: observed = number of offending rows, threshold = 0
    - aggregate expectations (row count, max, mean, ...): observed = GX's observed_value,
      threshold = max_value (or min_value when only a minimum is set)
    """
    details: dict[str, Any] = {}
    if exp.type == "unexpected_rows_expectation":
        return _number(result.get("observed_value")), 0.0, details
    if "unexpected_count" in result and "observed_value" not in result:
        for key in ("element_count", "unexpected_count", "unexpected_percent", "missing_count"):
            if key in result:
                details[key] = result[key]
        percent = result.get("unexpected_percent")
        observed = None if percent is None else 1.0 - float(percent) / 100.0
        return observed, float(exp.kwargs.get("mostly", 1.0)), details
    raw = result.get("observed_value")
    low = _resolve(exp.kwargs.get("min_value"), params)
    high = _resolve(exp.kwargs.get("max_value"), params)
    details.update({"observed_value": raw, "min_value": low, "max_value": high})
    threshold = _number(high) if high is not None else _number(low)
    return _number(raw), threshold, details


def unexpected_rows_sql(spec: SuiteSpec, exp: ExpectationSpec, params: dict[str, str]) -> str:
    """The `unexpected_rows_query` of `exp` as DuckDB runs it: run-time values filled, the
    batch being the suite's whole table."""
    return render(exp.kwargs["unexpected_rows_query"], params).replace("{batch}", _qualified(spec))


def unexpected_rows_sample(
    con: duckdb.DuckDBPyConnection,
    spec: SuiteSpec,
    exp: ExpectationSpec,
    params: dict[str, str],
    rows_table: str | None = None,
) -> list[dict[str, Any]]:
    """The first SAMPLE_LIMIT rows of a failed `unexpected_rows_query` (GX's SUMMARY format
    reports only their count), from the table holding its rows when it was computed once."""
    query = f"select * from {rows_table}" if rows_table else unexpected_rows_sql(spec, exp, params)
    # the computed rows through a cursor, as they were written (see _compute_unexpected_rows)
    reader = con.cursor() if rows_table else con
    try:
        cursor = reader.execute(f"select * from ({query}) as unexpected limit {SAMPLE_LIMIT}")
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    finally:
        if rows_table:
            reader.close()


def offending_sample(
    con: duckdb.DuckDBPyConnection,
    spec: SuiteSpec,
    exp: ExpectationSpec,
    result: dict[str, Any],
    params: dict[str, str],
) -> list[Any]:
    """Up to SAMPLE_LIMIT offending keys/rows of a failed expectation (bounded queries)."""
    table = _qualified(spec)
    if exp.type in ("expect_column_values_to_be_unique", "expect_compound_columns_to_be_unique"):
        columns = exp.kwargs.get("column_list") or [exp.kwargs["column"]]
        cols = ", ".join(_quote(c) for c in columns)
        not_null = " and ".join(f"{_quote(c)} is not null" for c in columns)
        rows = con.execute(
            f"select {cols}, count(*) as n from {table} where {not_null} "
            f"group by all having count(*) > 1 order by n desc, {cols} limit {SAMPLE_LIMIT}"
        ).fetchall()
        return [{**dict(zip(columns, row[:-1], strict=True)), "rows": row[-1]} for row in rows]
    if exp.type == "expect_column_values_to_not_be_null":
        sample_cols = [c for c in spec.sample_columns if c != exp.kwargs["column"]] or ["rowid"]
        cols = ", ".join(_quote(c) if c != "rowid" else "rowid" for c in sample_cols)
        rows = con.execute(
            f"select {cols} from {table} where {_quote(exp.kwargs['column'])} is null "
            f"limit {SAMPLE_LIMIT}"
        ).fetchall()
        return [dict(zip(sample_cols, row, strict=True)) for row in rows]
    if exp.type == "unexpected_rows_expectation":
        return unexpected_rows_sample(con, spec, exp, params)
    partial = result.get("partial_unexpected_list") or []
    distinct: list[Any] = []
    for value in partial:
        if value not in distinct:
            distinct.append(value)
    return distinct[:SAMPLE_LIMIT]


class QualityRunner:
    """Validates suites through one GX context on one DuckDB connection."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        *,
        docs_dir: Path,
        timezone: str = "Asia/Shanghai",
        expectations_dir: Path = EXPECTATIONS_DIR,
        sources: Collection[str] | None = None,
    ) -> None:
        self.con = con
        #: the entities with a configured source mapping (None: every entity, skip nothing)
        self.sources = None if sources is None else frozenset(sources)
        self.docs_dir = docs_dir
        self.timezone = timezone
        self.expectations_dir = expectations_dir
        self.context = gx_context(docs_dir, docs_dir.parent / "gx_validations")
        self.datasource = add_warehouse_datasource(self.context, con, DATASOURCE)
        self._result_ids: list[Any] = []
        self._rows_database = self._attach_rows_database()

    def _attach_rows_database(self) -> bool:
        """Attach the in-memory database for the computed rows (also to a read-only
        connection); False when it cannot be, and GX runs the queries itself."""
        try:
            self.con.execute(
                f"attach if not exists ':memory:' as {_quote(ROWS_DATABASE)} (read_only false)"
            )
        except duckdb.Error:
            return False
        return True

    def _skip_reason(self, entities: tuple[str, ...]) -> str | None:
        """Why expectations needing a source of `entities` are skipped (None: they run)."""
        if not entities or self.sources is None or self.sources & set(entities):
            return None
        return f"no source mapping for {' or '.join(entities)} in this deployment"

    def validate(self, spec: SuiteSpec, as_of: date, run_id: str) -> SuiteResult:
        started = time.perf_counter()
        params = runtime_parameters(as_of, self.timezone)
        suite_reason = self._skip_reason(spec.entities)
        skipped = [
            ExpectationOutcome.of(exp, success=True, observed=None, threshold=None, skipped=reason)
            for exp in spec.expectations
            if (reason := suite_reason or self._skip_reason(exp.entities))
        ]
        if skipped:
            names = {o.check for o in skipped}
            kept = tuple(e for e in spec.expectations if e.check not in names)
            if not kept:
                return SuiteResult(
                    spec.name,
                    spec.table,
                    spec.asset_key,
                    as_of,
                    run_id,
                    skipped,
                    time.perf_counter() - started,
                )
            result = self.validate(dataclasses.replace(spec, expectations=kept), as_of, run_id)
            result.outcomes.extend(skipped)
            return result
        if not _table_exists(self.con, spec):
            outcome = ExpectationOutcome(
                check="table_exists",
                expectation_type="table_exists",
                column=None,
                severity="blocking",
                success=False,
                observed=None,
                threshold=None,
                details={"error": f"table {spec.table} does not exist"},
            )
            return SuiteResult(
                spec.name,
                spec.table,
                spec.asset_key,
                as_of,
                run_id,
                [outcome],
                time.perf_counter() - started,
            )
        computed = self._compute_unexpected_rows(spec, params)
        try:
            return self._validate(spec, as_of, run_id, params, computed, started)
        finally:
            # through a cursor of its own, like the tables' creation (see there)
            cursor = self.con.cursor()
            for table in computed.values():
                with contextlib.suppress(duckdb.Error):
                    cursor.execute(f"drop table if exists {table}")
            cursor.close()

    def _compute_unexpected_rows(self, spec: SuiteSpec, params: dict[str, str]) -> dict[str, str]:
        """Run each `unexpected_rows_query` of the suite once, into a table (see the module
        docstring); check -> the table. A query that fails is left to GX (which reports it).

        Through a cursor (a connection of its own, in autocommit): GX reads through cursors
        too, which would not see a table created inside a transaction the caller left open
        on `self.con`. Tables are named by the expectation's position: checks are unique by
        name, but DuckDB compares names without case."""
        computed: dict[str, str] = {}
        if not self._rows_database:
            return computed
        cursor = self.con.cursor()
        try:
            for index, exp in enumerate(spec.expectations):
                if exp.type != "unexpected_rows_expectation":
                    continue
                table = f"{_quote(ROWS_DATABASE)}.main.{_quote(f'{spec.name}__{index}')}"
                try:
                    cursor.execute(
                        f"create or replace table {table} as {unexpected_rows_sql(spec, exp, params)}"
                    )
                except duckdb.Error:
                    continue
                computed[exp.check] = table
        finally:
            cursor.close()
        return computed

    def _validate(
        self,
        spec: SuiteSpec,
        as_of: date,
        run_id: str,
        params: dict[str, str],
        computed: dict[str, str],
        started: float,
    ) -> SuiteResult:
        import great_expectations as gx
        from great_expectations.core.run_identifier import RunIdentifier
        from great_expectations.expectations.expectation_configuration import (
            ExpectationConfiguration,
        )

        configurations = []
        for exp in spec.expectations:
            kwargs = render(exp.kwargs, params)
            meta = {**exp.meta, "check": exp.check, "severity": exp.severity}
            if exp.check in computed:
                # the rows computed once; `{batch}` keeps GX's check that the query reads
                # the batch (an always-empty subquery: the table's rows, whatever the batch)
                meta["unexpected_rows_query"] = kwargs["unexpected_rows_query"]
                kwargs = {
                    **kwargs,
                    "unexpected_rows_query": f"select * from {computed[exp.check]} "
                    "where not exists (select 1 from {batch} where false)",
                }
            configurations.append(
                ExpectationConfiguration(type=exp.type, kwargs=kwargs, meta=meta).to_domain_obj()
            )
        suite = gx.ExpectationSuite(
            name=spec.name,
            expectations=configurations,
            meta={"table": spec.table, "source": str(spec.path.name)},
        )
        suite = self.context.suites.add_or_update(suite)
        asset_name = spec.name
        try:
            asset = self.datasource.get_asset(asset_name)
        except LookupError:
            with warnings.catch_warnings():
                # GX deprecates schema_name in favour of one datasource per schema; one
                # datasource for the whole warehouse file is simpler and still supported.
                warnings.simplefilter("ignore", DeprecationWarning)
                asset = self.datasource.add_table_asset(
                    name=asset_name, table_name=spec.table_name, schema_name=spec.schema
                )
        try:
            batch_definition = asset.get_batch_definition("whole_table")
        except (KeyError, LookupError):
            batch_definition = asset.add_batch_definition_whole_table("whole_table")
        definition = self.context.validation_definitions.add_or_update(
            gx.ValidationDefinition(name=spec.name, data=batch_definition, suite=suite)
        )
        gx_result = definition.run(
            expectation_parameters=params,
            result_format={"result_format": "SUMMARY", "partial_unexpected_count": SAMPLE_LIMIT},
            run_id=RunIdentifier(run_name=run_id, run_time=datetime.now(UTC)),
        )
        by_check = {r.expectation_config.meta.get("check"): r for r in gx_result.results}
        outcomes = []
        for exp in spec.expectations:
            outcomes.append(
                self._outcome(spec, exp, by_check.get(exp.check), params, computed.get(exp.check))
            )
        self._remember(gx_result)
        return SuiteResult(
            spec.name,
            spec.table,
            spec.asset_key,
            as_of,
            run_id,
            outcomes,
            time.perf_counter() - started,
            gx_result,
        )

    def _outcome(
        self,
        spec: SuiteSpec,
        exp: ExpectationSpec,
        evr: Any,
        params: dict[str, str],
        rows_table: str | None = None,
    ) -> ExpectationOutcome:
        if evr is None:
            result: dict[str, Any] = {}
            success, error = False, "GX returned no result for this expectation"
        else:
            result = dict(evr.result or {})
            info = evr.exception_info or {}
            error = None
            if info.get("raised_exception"):
                error = info.get("exception_message")
            else:  # several metrics failed: {metric_id: {...}}
                for value in info.values():
                    if isinstance(value, dict) and value.get("raised_exception"):
                        error = value.get("exception_message")
                        break
            success = bool(evr.success) and error is None
        observed, threshold, details = observed_and_threshold(exp, result, params)
        if error:
            details["error"] = str(error)[:2000]
        outcome = ExpectationOutcome.of(
            exp, success=success, observed=observed, threshold=threshold, details=details
        )
        if not success and error is None:
            if exp.type == "unexpected_rows_expectation":
                outcome.sample = unexpected_rows_sample(self.con, spec, exp, params, rows_table)
            elif exp.severity == "blocking":
                outcome.sample = offending_sample(self.con, spec, exp, result, params)
            else:
                outcome.sample = offending_sample_cheap(result)
        return outcome

    def _remember(self, gx_result: Any) -> None:
        try:
            identifier = self.context.validation_results_store.store_validation_results(
                gx_result, gx_result.meta["run_id"], None, None
            )
        except Exception:  # noqa: BLE001 - storing for Data Docs must never fail the gate
            identifier = None
        if identifier is not None:
            self._result_ids.append(identifier)

    def build_docs(self) -> Path:
        """Render this run's validations and refresh the Data Docs index (all past runs), with
        the styles, scripts and fonts the pages load (served locally: they render offline)."""
        from pipelines.quality.docs_view import copy_vendored_assets

        self.context.build_data_docs(resource_identifiers=self._result_ids or None)
        copy_vendored_assets(self.docs_dir)
        return self.docs_dir / "index.html"


def offending_sample_cheap(result: dict[str, Any]) -> list[Any]:
    """Offending values GX already returned (no extra query): for target checks."""
    distinct: list[Any] = []
    for value in result.get("partial_unexpected_list") or []:
        if value is not None and value not in distinct:
            distinct.append(value)
    return distinct[:SAMPLE_LIMIT]


def write_results(
    con: duckdb.DuckDBPyConnection, results: Sequence[SuiteResult], checked_at: datetime
) -> int:
    """Append one row per expectation to quality.dq_results; returns the number of rows."""
    con.execute(DQ_RESULTS_DDL)
    rows = []
    for suite in results:
        for item in suite.outcomes:
            details = {**item.details, "expectation_type": item.expectation_type}
            if item.skipped:
                details["skipped"] = item.skipped
            if item.sample:
                details["sample"] = item.sample
            rows.append(
                (
                    suite.run_id,
                    checked_at,
                    suite.as_of,
                    suite.suite,
                    suite.table,
                    item.check,
                    item.column,
                    item.severity,
                    item.observed,
                    item.threshold,
                    item.success,
                    json.dumps(details, default=str, ensure_ascii=False),
                )
            )
    if rows:
        con.executemany(
            "insert into quality.dq_results values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
        )
    return len(rows)


@contextmanager
def _connection(
    db_or_con: Path | str | duckdb.DuckDBPyConnection,
) -> Iterator[duckdb.DuckDBPyConnection]:
    if isinstance(db_or_con, duckdb.DuckDBPyConnection):
        yield db_or_con
    else:
        with connect(Path(db_or_con)) as con:
            yield con


def _as_date(as_of: date | str) -> date:
    return as_of if isinstance(as_of, date) else date.fromisoformat(str(as_of))


def run_suites(
    db_or_con: Path | str | duckdb.DuckDBPyConnection,
    suite_names: Sequence[str] | None,
    as_of: date | str,
    run_id: str | None = None,
    *,
    docs_dir: Path,
    timezone: str = "Asia/Shanghai",
    expectations_dir: Path = EXPECTATIONS_DIR,
    write: bool = True,
    sources: Collection[str] | None = None,
) -> GateResult:
    """Validate the named suites (None: all), record results and Data Docs. `sources`: the
    entities with a configured source mapping; the expectations of a suite built only from
    other entities are skipped and recorded as skipped (None: nothing is skipped)."""
    started = time.perf_counter()
    as_of_date = _as_date(as_of)
    run_id = run_id or f"adhoc-{uuid.uuid4().hex[:12]}"
    specs = (
        load_suites(expectations_dir)
        if suite_names is None
        else [load_suite(name, expectations_dir) for name in suite_names]
    )
    with _connection(db_or_con) as con:
        runner = QualityRunner(
            con,
            docs_dir=docs_dir,
            timezone=timezone,
            expectations_dir=expectations_dir,
            sources=sources,
        )
        results = [runner.validate(spec, as_of_date, run_id) for spec in specs]
        index = None
        if write:
            write_results(con, results, datetime.now(UTC).replace(tzinfo=None))
            index = runner.build_docs()
    return GateResult(run_id, as_of_date, results, time.perf_counter() - started, index)


def run_suite(
    db_or_con: Path | str | duckdb.DuckDBPyConnection,
    suite_name: str,
    as_of: date | str,
    run_id: str | None = None,
    **options: Any,
) -> SuiteResult:
    """Validate one suite (see `run_suites` for the options)."""
    return run_suites(db_or_con, [suite_name], as_of, run_id, **options).suites[0]


def recorded_gate(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    as_of: date | str,
    expectations_dir: Path = EXPECTATIONS_DIR,
) -> list[str] | None:
    """What this run's asset checks already recorded in quality.dq_results: None unless every
    suite of `expectations_dir` was validated in run `run_id` as of `as_of` (then the gate
    must run); else `suite.check` of every blocking expectation whose latest result in the
    run failed (empty: every blocking expectation passed)."""
    names = [spec.name for spec in load_suites(expectations_dir)]
    exists = con.execute(
        "select count(*) from duckdb_tables() where database_name = current_database() "
        "and schema_name = 'quality' and table_name = 'dq_results'"
    ).fetchone()[0]
    if not exists or not names:
        return None
    rows = con.execute(
        """
        with latest as (
            select suite, expectation, severity, success,
                row_number() over (
                    partition by suite, expectation order by checked_at desc
                ) as rn
            from quality.dq_results
            where run_id = ? and as_of_date = ?
        )
        select suite, expectation, severity, success from latest where rn = 1
        """,
        [run_id, _as_date(as_of)],
    ).fetchall()
    if not set(names) <= {suite for suite, *_ in rows}:
        return None
    return sorted(
        f"{suite}.{check}"
        for suite, check, severity, success in rows
        if suite in names and severity == "blocking" and not success
    )


def run_gate(
    db_or_con: Path | str | duckdb.DuckDBPyConnection,
    as_of: date | str,
    run_id: str | None = None,
    **options: Any,
) -> GateResult:
    """Every suite: the last guard before publication. `result.blocking_failed` lists
    `suite.check` of every failed blocking expectation (empty: publish)."""
    return run_suites(db_or_con, None, as_of, run_id, **options)
