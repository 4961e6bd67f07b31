"""Realistic, deterministic demo data: `crm generate --preset small|medium|large`.

See docs/generator.md for the sources, the behaviour model and the injected defects.
"""

from pipelines.generate.engine import SOURCES, GenerateError, GenerateResult, generate
from pipelines.generate.presets import PRESETS, Preset, Rates

__all__ = [
    "PRESETS",
    "SOURCES",
    "GenerateError",
    "GenerateResult",
    "Preset",
    "Rates",
    "generate",
]
