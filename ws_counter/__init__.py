"""ws-counter: stateless WebSocket workers sharing exact counters in Redis.

The one name the wheel installs beside the client library (``ws_counter_client``):

* ``ws_counter.worker``: the service, what a worker process runs (the
  repository's ``worker/`` folder);
* ``ws_counter.tools``: the ``ws-counter`` command and the operator tools that
  drive the worker from outside (the repository's ``tools/`` folder).

In the repository both are links to those folders, so the checkout imports
exactly what the wheel installs.
"""

__version__ = "0.1.0"
