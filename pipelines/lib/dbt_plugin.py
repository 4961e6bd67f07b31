"""dbt-duckdb plugin: registers `crm_pseudonym(varchar) -> varchar` on dbt's connections.

Listed in dbt_project/profiles.yml (`plugins:`). The function is HMAC-SHA256 with the
project's secret key (pipelines/lib/pseudonym.py); the key is read here, in the dbt
process, so it never appears in SQL, in dbt's logs or in target/. The key is loaded on the
first call, so `dbt parse` and `dbt docs generate` need none.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from dbt.adapters.duckdb.plugins import BasePlugin
from duckdb import DuckDBPyConnection
from duckdb.sqltypes import VARCHAR

from pipelines.lib.pseudonym import load_key, pseudonym


class Plugin(BasePlugin):
    def initialize(self, plugin_config: dict[str, Any]) -> None:
        self._key_file = plugin_config.get("key_file") or None
        self._key: bytes | None = None

    def _pseudonyms(self, values: pa.Array) -> pa.Array:
        if self._key is None:
            self._key = load_key(self._key_file)
        key = self._key
        return pa.array([pseudonym(v, key) for v in values.to_pylist()], type=pa.string())

    def configure_connection(self, conn: DuckDBPyConnection) -> None:
        conn.create_function(
            "crm_pseudonym",
            self._pseudonyms,
            [VARCHAR],
            VARCHAR,
            type="arrow",
            side_effects=False,
        )
