"""Hosts as Linux network namespaces on a bridge of the lab's own; nemeses that cut, drop and
slow traffic between them. Needs root.

Addresses come from 198.18.0.0/15, the range kept for network tests (RFC 2544):
lab N uses 198.18.N.0/24, the bridge holds .1 (where the suite's clients run),
hosts .10 and up. Every name carries the lab's tag, so a lab removes exactly
what it made, also after a failure (``Lab`` is a context manager), and a
later lab with the same tag first clears what a killed one left.

Nemeses act inside the namespaces (iptables there sees each host's own
packets; nothing is changed in the machine's own namespace but the bridge):

* ``partition(a, b)``: every packet between the hosts of ``a`` and ``b``
  dropped, both ways, until ``heal``.
* ``lose(host, p)``: a fraction ``p`` of the packets reaching ``host`` dropped
  (iptables' statistic match).
* ``slow(host, port, delay, jitter)``: connections to ``host:port`` delayed
  ``delay`` ± ``jitter`` seconds each way. tc netem does this where the kernel
  has it; kernels without sch_netem (``netem_available``) get the same effect
  from a relay in the host's namespace that holds each chunk of data that
  long, reached by an iptables REDIRECT of the port, so clients and Redis
  see nothing else change.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

SUBNET_FIRST = 198
SUBNET_SECOND = 18
# The checkout: the relay runs from it (the fault suite is not part of the wheel).
ROOT = Path(__file__).resolve().parent.parent


class LabError(RuntimeError):
    """A command that makes or breaks the lab's network failed."""


def sh(*argv: str, check: bool = True) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise LabError(f"{' '.join(argv)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


@dataclass(frozen=True, slots=True)
class Host:
    name: str
    namespace: str
    address: str

    def run(self, *argv: str) -> list[str]:
        """``argv`` as run inside this host."""
        return ["ip", "netns", "exec", self.namespace, *argv]


class Lab:
    """A bridge and one namespace per host, torn down on exit whatever happened."""

    def __init__(self, names: Sequence[str], number: int = 0, tag: str = "wsc") -> None:
        if not 0 <= number <= 255:
            raise ValueError("the lab number picks 198.18.N.0/24: 0 to 255")
        self.tag = f"{tag}{number}"
        self.bridge = f"{self.tag}br"
        prefix = f"{SUBNET_FIRST}.{SUBNET_SECOND}.{number}"
        self.gateway = f"{prefix}.1"
        self.hosts = {
            name: Host(name, f"{self.tag}-{name}", f"{prefix}.{10 + index}")
            for index, name in enumerate(names)
        }
        self._relays: list[subprocess.Popen[bytes]] = []

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def __enter__(self) -> Lab:
        self.remove()
        try:
            self._make()
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def _make(self) -> None:
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        sh("ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")
        for index, host in enumerate(self.hosts.values()):
            outside = f"{self.tag}v{index}"
            sh("ip", "netns", "add", host.namespace)
            sh(*f"ip link add {outside} type veth peer name eth0 netns {host.namespace}".split())
            sh("ip", "link", "set", outside, "master", self.bridge, "up")
            sh(*host.run("ip", "addr", "add", f"{host.address}/24", "dev", "eth0"))
            sh(*host.run("ip", "link", "set", "eth0", "up"))
            sh(*host.run("ip", "link", "set", "lo", "up"))

    def remove(self) -> None:
        """Delete the lab's namespaces, any veth end left behind, and its bridge, if present.

        A lab whose own process was killed leaves its processes running in its
        namespaces: they are the lab's (nothing else runs there), stopped by pid."""
        for relay in self._relays:
            relay.kill()
            relay.wait()
        self._relays.clear()
        present = sh("ip", "netns", "list", check=False)
        for host in self.hosts.values():
            if any(line.split()[:1] == [host.namespace] for line in present.splitlines()):
                for pid in sh("ip", "netns", "pids", host.namespace, check=False).split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
                sh("ip", "netns", "del", host.namespace, check=False)
        # A veth normally goes with its namespace, but a lab stopped midway (or a namespace
        # deleted while its veth was still being moved) can leave the bridge's end behind.
        for index in range(len(self.hosts)):
            outside = f"{self.tag}v{index}"
            if sh("ip", "link", "show", outside, check=False):
                sh("ip", "link", "del", outside, check=False)
        if sh("ip", "link", "show", self.bridge, check=False):
            sh("ip", "link", "del", self.bridge, check=False)

    # Nemeses.

    def partition(self, side: Sequence[Host], other: Sequence[Host]) -> None:
        """Drop every packet between ``side`` and ``other``, both ways."""
        for one, others in ((side, other), (other, side)):
            for host in one:
                for peer in others:
                    sh(*host.run("iptables", "-I", "INPUT", "-s", peer.address, "-j", "DROP"))
                    sh(*host.run("iptables", "-I", "OUTPUT", "-d", peer.address, "-j", "DROP"))

    def lose(self, host: Host, probability: float) -> None:
        """Drop a fraction of the packets that reach ``host`` from the bridge."""
        rule = f"-i eth0 -m statistic --mode random --probability {probability:g} -j DROP"
        sh(*host.run("iptables", "-I", "INPUT", *rule.split()))

    def slow(self, host: Host, port: int, delay: float, jitter: float) -> None:
        """Delay connections to ``host:port`` by ``delay`` ± ``jitter`` seconds each way."""
        if netem_available():
            netem = (
                f"tc qdisc replace dev eth0 root netem delay {delay * 1000:g}ms {jitter * 1000:g}ms"
            )
            sh(*host.run(*netem.split()))
            return
        relay_port = port + 10000
        relay = subprocess.Popen(
            host.run(
                sys.executable,
                "-m",
                "faults.relay",
                *f"{relay_port} {port} {delay:g} {jitter:g}".split(),
            ),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=ROOT,
        )
        self._relays.append(relay)
        assert relay.stdout is not None
        if relay.stdout.readline().strip() != b"ready":
            raise LabError(f"the delay relay on {host.name} did not start")
        redirect = f"-i eth0 -p tcp --dport {port} -j REDIRECT --to-ports {relay_port}"
        sh(*host.run("iptables", "-t", "nat", "-I", "PREROUTING", *redirect.split()))

    def heal(self) -> None:
        """Undo every nemesis: rules, delays, relays."""
        for host in self.hosts.values():
            sh(*host.run("iptables", "-F"))
            sh(*host.run("iptables", "-t", "nat", "-F"))
            if netem_available():
                sh(*host.run("tc", "qdisc", "del", "dev", "eth0", "root"), check=False)
        # New connections go straight again; relayed ones stay, undelayed, until the lab
        # goes: a healed network does not cut what crossed it.
        for relay in self._relays:
            relay.send_signal(signal.SIGUSR1)


@cache
def netem_available() -> bool:
    """Whether this kernel has tc netem (sch_netem), tried in a namespace of its own."""
    probe = "wscnetemprobe"
    sh("ip", "netns", "add", probe, check=False)
    try:
        done = subprocess.run(
            f"ip netns exec {probe} tc qdisc add dev lo root netem delay 1ms".split(),
            capture_output=True,
            check=False,
        )
        return done.returncode == 0
    finally:
        sh("ip", "netns", "del", probe, check=False)
