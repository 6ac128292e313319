"""ws-counter's tools: the ``ws-counter`` command, the local cluster, the demo,
the interactive client and the load test.

They drive the worker from outside, through its public protocol
(``ws_counter.worker.core.protocol``), its settings and its entry point; the worker never
imports them (an import-linter contract in pyproject.toml holds it to that).
"""
