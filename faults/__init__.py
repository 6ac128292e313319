"""ws-counter's fault suite: hosts as network namespaces, nemeses, histories and a checker.

``python -m faults`` runs the scenarios (docs/guarantees.md, "Network faults").
``history`` and ``checker`` are pure; ``net`` makes and breaks the network;
``deployments`` starts Redis, Sentinels and workers on its hosts; ``recorder``
runs clients over the client library's core and writes the history.
"""
