"""The worker's pure core: rules without I/O.

Nothing under ``ws_counter.worker.core`` imports asyncio, redis or websockets (an
import-linter contract in pyproject.toml holds it to that), so every rule here
is tested with tables of inputs, no sockets and no sleeps.
"""
