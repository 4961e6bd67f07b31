"""dbt-duckdb plugin: registers `crm_pseudonym(varchar) -> varchar` on dbt's connections.

Listed in dbt_project/profiles.yml (`plugins:`). The function is HMAC-SHA256 with the
project's secret key (pipelines/lib/pseudonym.py); the key is read here, in the dbt
process, so it never appears in SQL, in dbt's logs or in target/. The key is loaded on the
first call, so `dbt parse` and `dbt docs generate` need none.

Loading the plugin also arms the dbt process's parent-death signal (pipelines/lib/
child_guard.py): a pipeline process killed with SIGKILL takes its dbt child with it.
"""

from __future__ import annotations

import os
from functools import partial
from typing import Any

from dbt.adapters.duckdb.plugins import BasePlugin
from duckdb import DuckDBPyConnection

from pipelines.lib.child_guard import die_with_parent
from pipelines.lib.pseudonym import KEY_ENV, load_key, register_pseudonym


class Plugin(BasePlugin):
    """The entry point of the project's code in the dbt process: it reads that process's
    environment, which the pipeline set for it (`dbt_env`: the parent's pid, the key when
    it comes from $CRM_PSEUDONYM_KEY), and passes the values on."""

    def initialize(self, plugin_config: dict[str, Any]) -> None:
        die_with_parent(os.environ)
        self._key_file = plugin_config.get("key_file") or None
        self._key = os.environ.get(KEY_ENV) or None

    def configure_connection(self, conn: DuckDBPyConnection) -> None:
        register_pseudonym(conn, partial(load_key, self._key_file, key=self._key))
