"""Fuzzing: generated notebooks and mutated notebook files. ``STATS`` feeds the report in the test summary."""

from __future__ import annotations

from collections import Counter

STATS: Counter[str] = Counter()
