"""Personal-data protection: erasure (`crm forget`) and re-delivery suppression."""

from pipelines.privacy.erasure import (
    ErasureError,
    ErasureResult,
    clear_full_refresh,
    forget,
    full_refresh_requested,
    purge_erased,
    request_full_refresh,
)
from pipelines.privacy.keys import KeyMismatchError, Rotation, rotate_key, verify_key

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
