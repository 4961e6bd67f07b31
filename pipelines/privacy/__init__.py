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

__all__ = [
    "ErasureError",
    "ErasureResult",
    "clear_full_refresh",
    "forget",
    "full_refresh_requested",
    "purge_erased",
    "request_full_refresh",
]
