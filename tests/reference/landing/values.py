"""Typing the values of a canonical field: the scalar ``type_*`` functions (DuckDB-like
TRY_CAST rules) and ``type_column``, their vectorised form."""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # the rule's type only: mapping imports this module
    from reference.landing.mapping import FieldRule

BOOL_TRUE = {"true", "t", "yes", "y", "1"}
BOOL_FALSE = {"false", "f", "no", "n", "0"}
_INTEGER = re.compile(r"^([+-]?\d+)(?:\.0*)?$")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


_FAIL = object()


def _text(v: Any) -> Any:
    if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NaT:
        return None
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def type_decimal(v: Any, scale: int) -> Any:
    """DuckDB-like TRY_CAST to decimal(18, scale): half away from zero."""
    if v is None:
        return None
    s = str(v).strip()
    if s == "":
        return None
    if not _NUMBER.match(s):
        return _FAIL
    try:
        d = Decimal(s).quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP)
    except InvalidOperation:
        return _FAIL
    return float(d)


def type_integer(v: Any) -> Any:
    """Digits with an optional sign and ``.0`` (docs/ingestion.md): ``4.5`` is not one."""
    if v is None:
        return None
    s = str(v).strip()
    if s == "":
        return None
    m = _INTEGER.match(s)
    if not m:
        return _FAIL
    return int(m.group(1))


def type_boolean(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, bool | np.bool_):
        return bool(v)
    s = str(v).strip().lower()
    if s == "":
        return None
    if s in BOOL_TRUE:
        return True
    if s in BOOL_FALSE:
        return False
    return _FAIL


_BAD_OFFSET = re.compile(r"[+-](\d\d):?(\d\d)$")


def _parse_iso(s: str) -> datetime | None:
    t = s.strip().replace(" ", "T", 1) if "T" not in s else s.strip()
    if t.endswith(("Z", "z")):
        t = t[:-1] + "+00:00"
    off = _BAD_OFFSET.search(t)
    if off and "T" in t and (int(off.group(1)) > 23 or int(off.group(2)) > 59):
        return None  # fromisoformat reads +08:61 as +09:01
    try:
        return datetime.fromisoformat(t)
    except ValueError:
        return None


def type_timestamp(v: Any, formats: tuple[str, ...], tz: ZoneInfo) -> Any:
    """A UTC naive datetime; values without an offset are local to ``tz``."""
    if v is None:
        return None
    if isinstance(v, pd.Timestamp):
        v = v.to_pydatetime()
    if isinstance(v, datetime):
        dt = v
    elif isinstance(v, date):
        dt = datetime(v.year, v.month, v.day)
    else:
        s = str(v).strip()
        if s == "":
            return None
        dt = None
        if formats:
            for f in formats:
                try:
                    dt = datetime.strptime(s, f)
                    break
                except ValueError:
                    continue
        else:
            dt = _parse_iso(s)
        if dt is None:
            return _FAIL
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=tz)
    return dt.astimezone(ZoneInfo("UTC")).replace(tzinfo=None)


def type_date(v: Any, formats: tuple[str, ...]) -> Any:
    if v is None:
        return None
    if isinstance(v, datetime):
        return v.date()
    if isinstance(v, date):
        return v
    s = str(v).strip()
    if s == "":
        return None
    for f in formats or ("%Y-%m-%d",):
        try:
            return datetime.strptime(s, f).date()
        except ValueError:
            continue
    if not formats and (dt := _parse_iso(s)) is not None:
        return dt.date()
    return _FAIL


def _type_value(kind: str, v: Any, rule: FieldRule | None, tz: ZoneInfo) -> Any:
    formats = rule.formats if rule else ()
    if kind == "text":
        return _text(v)
    if kind == "timestamp":
        return type_timestamp(v, formats, tz)
    if kind == "date":
        return type_date(v, formats)
    if kind == "integer":
        return type_integer(v)
    if kind == "boolean":
        return type_boolean(v)
    if kind.startswith("decimal"):
        return type_decimal(v, int(kind.split(":")[1]))
    raise AssertionError(kind)


def _strings(values: list[Any]) -> tuple[pd.Series, np.ndarray]:
    """Values as stripped strings (None for NULL / blank) and the mask of non-NULL."""
    s = pd.Series([None if v is None else str(v) for v in values], dtype=object)
    s = s.str.strip()
    s = s.where(s.notna() & s.ne(""), None)
    return s, s.notna().to_numpy()


def type_column(
    kind: str, values: list[Any], rule: FieldRule | None, tz: ZoneInfo
) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised typing of one column: (typed values as an object array with None for
    NULL, mask of non-empty values that do not type). Same rules as the scalar
    ``type_*`` functions, which handle the rare values the fast paths leave over."""
    n = len(values)
    formats = rule.formats if rule else ()
    if kind == "text":
        out = np.array(
            [v if (v is None or type(v) is str) else _text(v) for v in values], dtype=object
        )
        return out, np.zeros(n, dtype=bool)
    if kind == "timestamp" and n and all(isinstance(v, str) or v is None for v in values):
        s, present = _strings(values)
        result = pd.Series(pd.NaT, index=s.index, dtype="datetime64[us]")
        todo = present.copy()
        for f in formats:
            if not todo.any():
                break
            if "%z" in f:  # Python's strptime below (pandas and DuckDB disagree on offsets)
                continue
            parsed = pd.to_datetime(s[todo], format=f, errors="coerce", utc="%z" in f)
            # pandas reads 23:59:60 as the next day's 00:00:00: a value the fast path
            # settles must format back to itself (others go to Python's strptime below)
            parsed = parsed.where(parsed.dt.strftime(f) == s[todo])
            if "%z" in f:
                parsed = parsed.dt.tz_localize(None)
            else:
                parsed = parsed.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
                parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
            ok = parsed.notna()
            result.loc[ok[ok].index] = parsed[ok].astype("datetime64[us]")
            todo[ok[ok].index.to_numpy()] = False
        if todo.any():  # ISO 8601 (no formats), or what the fast path could not settle
            for i in np.flatnonzero(todo):
                t = type_timestamp(s.iat[i], formats, tz)
                if t is not _FAIL and t is not None:
                    result.iat[i] = t
                    todo[i] = False
        out = np.array([None if pd.isna(t) else t.to_pydatetime() for t in result], dtype=object)
        return out, todo
    if kind.startswith("decimal") and n:
        scale = int(kind.split(":")[1])
        s, present = _strings(values)
        number = s.str.fullmatch(_NUMBER.pattern[1:-1]).fillna(False).to_numpy(dtype=bool)
        fail = present & ~number
        nums = pd.to_numeric(s.where(number, None), errors="coerce")
        exact = s.str.fullmatch(rf"[+-]?\d*(\.\d{{0,{scale}}})?").fillna(False).to_numpy(bool)
        out = nums.to_numpy(dtype=float).astype(object)
        out[~number] = None
        for i in np.flatnonzero(number & ~exact):  # more digits than the scale: round
            out[i] = type_decimal(s.iat[i], scale)
        return out, fail
    typed = [_type_value(kind, v, rule, tz) for v in values]
    fail = np.fromiter((t is _FAIL for t in typed), dtype=bool, count=n)
    out = np.array([None if t is _FAIL else t for t in typed], dtype=object)
    return out, fail
