"""``ws-counter loadtest``: many clients, exact totals, latencies as a person sees them.

The public functions, for the demo and the benchmark: ``run_loadtest`` with
``LoadOptions`` returns the report that ``print_summary`` shows.
"""

from __future__ import annotations

from .cli import print_summary, run_loadtest
from .plan import LoadOptions

__all__ = ["LoadOptions", "print_summary", "run_loadtest"]
