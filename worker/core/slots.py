"""Redis Cluster's key space: which slot a key is in, and which node serves a slot.

Pure: the Redis adapter reads CLUSTER SLOTS and asks here where a counter
lives. A counter's keys and channel all carry the hash tag ``{NAME}``, so one
slot holds every key its Lua step touches and its sharded channel.
"""

from __future__ import annotations

import bisect
from binascii import crc_hqx
from collections.abc import Sequence
from dataclasses import dataclass

SLOTS = 16384
Address = tuple[str, int]


def key_slot(key: str) -> int:
    """The slot of ``key``: CRC16 of its hash tag (the part in the first ``{...}``, if any)."""
    data = key.encode()
    start = data.find(b"{")
    if start >= 0:
        end = data.find(b"}", start + 1)
        if end > start + 1:
            data = data[start + 1 : end]
    return crc_hqx(data, 0) % SLOTS


@dataclass(frozen=True, slots=True)
class Topology:
    """Slot ranges (first, last) and the primary that serves each, sorted by first slot."""

    firsts: tuple[int, ...]
    lasts: tuple[int, ...]
    owners: tuple[Address, ...]

    @classmethod
    def from_cluster_slots(cls, reply: Sequence[Sequence[object]]) -> Topology:
        """From CLUSTER SLOTS: [[first, last, [host, port, id, ...], replicas...], ...]."""
        ranges = sorted(
            (int(str(entry[0])), int(str(entry[1])), _address(entry[2])) for entry in reply
        )
        return cls(
            tuple(first for first, _, _ in ranges),
            tuple(last for _, last, _ in ranges),
            tuple(owner for _, _, owner in ranges),
        )

    def owner(self, slot: int) -> Address | None:
        """The primary serving ``slot``, or None while no node claims it."""
        index = bisect.bisect_right(self.firsts, slot) - 1
        if index < 0 or slot > self.lasts[index]:
            return None
        return self.owners[index]

    @property
    def primaries(self) -> set[Address]:
        return set(self.owners)

    def slots_of(self, owner: Address) -> list[tuple[int, int]]:
        return [
            (first, last)
            for first, last, address in zip(self.firsts, self.lasts, self.owners, strict=True)
            if address == owner
        ]


def _address(node: object) -> Address:
    host, port = list(node)[:2]  # type: ignore[call-overload]
    return (str(host), int(port))


def channel_in_slots(prefix: str, ranges: list[tuple[int, int]]) -> str:
    """A channel name ``prefix{N}`` whose slot falls in ``ranges`` (one node's slots)."""
    for number in range(SLOTS * 8):
        name = f"{prefix}{{{number}}}"
        slot = key_slot(name)
        if any(first <= slot <= last for first, last in ranges):
            return name
    raise ValueError("no channel name falls in the given slots")


@dataclass(frozen=True, slots=True)
class View:
    """One node's view of the cluster: its slot map, whether it reaches a majority
    (``cluster_state:ok``) and the newest failover it has seen (``cluster_current_epoch``)."""

    topology: Topology
    healthy: bool
    epoch: int


def parse_cluster_info(text: str) -> tuple[bool, int]:
    """``cluster_state`` is ok, and ``cluster_current_epoch``, from CLUSTER INFO."""
    fields = dict(line.partition(":")[::2] for line in text.splitlines() if ":" in line)
    return fields.get("cluster_state", "").strip() == "ok", int(
        fields.get("cluster_current_epoch", "0").strip() or 0
    )


def newest_view(views: Sequence[View]) -> Topology | None:
    """The slot map to follow: from a node that reaches a majority, the one that has seen
    the latest failover (highest epoch); None if no node claims any slot.

    A primary cut off from the others still answers with its old map until it
    learns otherwise, so the first answer is not enough: its state turns to
    fail once it cannot reach a majority, and its epoch stays behind theirs.
    """
    claimed = [view for view in views if view.topology.owners]
    if not claimed:
        return None
    return max(claimed, key=lambda view: (view.healthy, view.epoch)).topology
