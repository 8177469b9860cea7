"""Seeded sample data for the Nansha demo deployment (``nsdx samples generate``).

The datasets are synthetic but shaped like the real feeds of Nansha's transport and
urban-management bodies: real place, road, station and street names, plausible volumes
and daily rhythms, Guangzhou plates and mainland phone numbers (all invented), GB18030 and
Excel files where the real providers deliver those.
"""

from .generate import DEFAULT_ROWS, DEFAULT_SEED, GENERATOR_VERSION, SAMPLE_FILES, generate

__all__ = ["DEFAULT_ROWS", "DEFAULT_SEED", "GENERATOR_VERSION", "SAMPLE_FILES", "generate"]
