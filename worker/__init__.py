"""ws-counter: stateless WebSocket workers sharing exact counters in Redis."""

__version__ = "0.1.0"
