"""dbt context stand-ins for sqlfluff's jinja templater (the dbt templater is not part of
the environment). Everything defined here is visible to the models and macros when
sqlfluff renders them; sqlfluff's own dbt builtins fill in ref/source/config/...

- var(): the project's real vars from dbt_project.yml (as_of_date fixed to a demo date),
  so that expressions such as -var('lifecycle_new_days') render as in dbt.
- adapter.dispatch(name): renders the dispatched macro as a plain SQL call with the same
  arguments (connected_components as a join of its two queries, month_spine_join,
  week_spine_join and day_spine_join as a join of a table function), which lints like the real expression.
- modules / exceptions: the parts of dbt's context the macros use.
"""

import datetime as _datetime
import re as _re
from pathlib import Path as _Path
from types import SimpleNamespace as _Namespace
from zoneinfo import ZoneInfo as _ZoneInfo

import yaml as _yaml

_PROJECT = _Path(__file__).resolve().parents[2] / "dbt_project.yml"
_VARS = dict(_yaml.safe_load(_PROJECT.read_text(encoding="utf-8")).get("vars") or {})
_VARS["as_of_date"] = "2026-10-31"


def var(name, default=None):
    return _VARS.get(name, default)


def _dispatch(macro_name, macro_namespace=None):
    def render(*args, **kwargs):
        arguments = ", ".join(str(arg) for arg in args)
        if macro_name == "connected_components":
            nodes_sql, edges_sql = args[0], args[1]
            return (
                f"select nodes.node_id, edges.to_node_id as component_node_id "
                f"from ({nodes_sql}) as nodes inner join ({edges_sql}) as edges "
                "on nodes.node_id = edges.from_node_id"
            )
        if macro_name in ("month_spine_join", "week_spine_join", "day_spine_join"):
            start, end, alias = args
            return f"cross join {macro_name[:-5]}({start}, {end}) as {alias}"
        return f"{macro_name}({arguments})"

    return render


def _raise_compiler_error(message):
    raise RuntimeError(message)


adapter = _Namespace(dispatch=_dispatch)
modules = _Namespace(
    re=_re,
    datetime=_datetime,
    pytz=_Namespace(timezone=_ZoneInfo),
)
exceptions = _Namespace(raise_compiler_error=_raise_compiler_error)
