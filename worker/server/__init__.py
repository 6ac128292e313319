"""The websockets adapter: the only part of the worker that talks to websockets.

``handshake`` answers HTTP (probes, metrics, the page) and admits WebSockets,
``connection`` carries out one client's flow control, ``increments`` turns a
client's frames into acks, ``fanout`` writes a counter's new state to its
clients, and ``worker`` puts them together with the Redis store and drains.
"""

from __future__ import annotations

from .worker import Worker

__all__ = ["Worker"]
