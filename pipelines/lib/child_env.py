"""The environment of a child process (dbt, Spark's dbt): this process's own, which the
child inherits as any subprocess does (PATH, HOME, locale, proxies, the Spark profile's
variables), with the deployment's values added on top. Libraries pass those values
explicitly; this is the one place that copies the inherited environment."""

from __future__ import annotations

import os
from collections.abc import Mapping


def child_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment with `extra` on top, for `subprocess.run(env=...)`."""
    return {**os.environ, **extra}
