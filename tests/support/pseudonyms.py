"""The warehouse's customer_id computed independently of pipelines/lib/pseudonym.py."""

from __future__ import annotations

import hashlib
import hmac
import os


def expected_customer_id(record_id: str) -> str:
    """HMAC-SHA256 of the smallest record id with the tests' key (tests/conftest.py)."""
    key = os.environ["CRM_PSEUDONYM_KEY"].encode()
    return hmac.new(key, record_id.encode(), hashlib.sha256).hexdigest()[:32]
