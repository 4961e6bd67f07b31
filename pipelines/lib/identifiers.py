"""Phone and e-mail normalisation for identifiers given at run time (`crm forget --phone`,
the raw text of quarantined lines): the same rules as the dbt staging macros
(docs/warehouse.md, "Staging rules"), so that a value normalised here matches the
warehouse's. The pandas reference keeps its own copy, written independently, and the tests
check the two agree (tests/test_import_layers.py keeps the runtime from importing it)."""

from __future__ import annotations

import math
import re

_EMAIL = re.compile(r"^[a-z0-9._%+\-]+@[a-z0-9\-]+(\.[a-z0-9\-]+)*\.[a-z]{2,}$")
_PHONE_SEPARATORS = re.compile(r"[\s\-().]")
_CN_MOBILE = re.compile(r"^1[3-9]\d{9}$")
_CN_LANDLINE = re.compile(r"^(10|2\d|[3-9]\d\d)\d{7,8}$")


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _cn_national(digits: str) -> bool:
    return bool(_CN_MOBILE.match(digits) or _CN_LANDLINE.match(digits))


def normalise_phone(value: object) -> str | None:
    """E.164 (``+8613800138000``), CN the default country; None when the value cannot be a
    phone number. Separators (space, ``-``, ``.``, parentheses) are dropped; ``+`` / ``00``
    start an international number (``+86``: a CN mobile or landline; others 8-15 digits);
    ``86`` + a mobile; a trunk ``0`` + a landline; a bare mobile."""
    if _missing(value):
        return None
    s = _PHONE_SEPARATORS.sub("", str(value).strip())
    if s.startswith("+") or (s.startswith("00") and s.isdigit()):
        digits = s[1:] if s.startswith("+") else s[2:]
        if not digits.isdigit():
            return None
        if digits.startswith("86"):
            return "+" + digits if _cn_national(digits[2:]) else None
        return "+" + digits if 8 <= len(digits) <= 15 else None
    if not s.isdigit():
        return None
    if s.startswith("86") and _CN_MOBILE.match(s[2:]):
        return "+" + s
    if s.startswith("0") and _CN_LANDLINE.match(s[1:]):
        return "+86" + s[1:]
    if _CN_MOBILE.match(s):
        return "+86" + s
    return None


def normalise_email(value: object) -> str | None:
    """Trimmed, lower case; None when not a plausible address."""
    if _missing(value):
        return None
    s = str(value).strip().lower()
    return s if _EMAIL.match(s) else None
