"""One CSV per phase (`baseline.csv`, `concurrency.csv`, `rate.csv`), in the seeds' column layout.

The seeds' columns come first and in their order; the bench's extra columns (means, goodput, and its
own health: achieved rate, late requests, loop lag, `reliable`) follow, so tools that read the seeds'
files by column name read these too.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from bench.runner import RunResult
from bench.summary import Value


def _cell(value: Value) -> Value:
    return "" if isinstance(value, float) and math.isnan(value) else value


def write_phase_csvs(result: RunResult, directory: Path) -> list[Path]:
    """Write a CSV for each phase that ran; returns the files written."""
    written = []
    for phase in ("baseline", "concurrency", "rate"):
        levels = result.phase(phase)
        if not levels:
            continue
        columns: list[str] = []
        for level in levels:
            columns += [key for key in level.summary.row if key not in columns]
        path = directory / f"{phase}.csv"
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            for level in levels:
                writer.writerow({k: _cell(v) for k, v in level.summary.row.items()})
        written.append(path)
    return written
