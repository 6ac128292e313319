"""Servers ws-counter is measured against. They speak its protocol (docs/protocol.md)
closely enough for the benchmark's clients: a total on open, acks with seq, totals
pushed with seq."""
