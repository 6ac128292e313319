"""The websockets adapter: the only part of the worker that talks to websockets.

``front`` reads each connection's request head and hands WebSocket upgrades
to websockets, everything else to ``http`` (HTTP/1.1 with h11), where ``api``
answers probes, metrics, the page, the client module and the HTTP API.
``handshake`` admits WebSockets, ``connection`` carries out one client's flow
control, ``increments`` turns a client's frames and POSTs into acks,
``fanout`` writes a counter's new state to its clients, and ``worker`` puts
them together with the Redis store and drains.
"""

from __future__ import annotations

from .worker import Worker

__all__ = ["Worker"]
