"""Personal-data protection: erasure (`crm forget`), key rotation (`crm rotate-key`), and
the guards the load and every dbt run call (pipelines/lib: key_check, erasure_guards),
composed here for the commands."""

from pipelines.lib.erasure_guards import (
    clear_full_refresh,
    full_refresh_requested,
    purge_erased,
    request_full_refresh,
)
from pipelines.lib.erasure_ledger import ErasureError
from pipelines.lib.key_check import KeyMismatchError, verify_key
from pipelines.privacy.erasure import ErasureResult, forget
from pipelines.privacy.keys import Rotation, rotate_key

__all__ = [
    "ErasureError",
    "ErasureResult",
    "KeyMismatchError",
    "Rotation",
    "clear_full_refresh",
    "forget",
    "full_refresh_requested",
    "purge_erased",
    "request_full_refresh",
    "rotate_key",
    "verify_key",
]
