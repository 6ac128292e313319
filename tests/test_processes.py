"""The launcher's child processes and Redis Cluster ports, which every cluster test stands on."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

from ws_counter.tools.processes import LOWEST_PICKED_PORT, Child, first_ephemeral_port, free_port
from ws_counter.tools.rediscluster import BUS_OFFSET, RedisClusterProcesses, free_cluster_ports


def test_signalling_a_child_as_it_exits_is_not_an_error() -> None:
    """The output thread reaps a child as it exits; a signal sent meanwhile must not raise.

    The child closes its output first, so the output thread is already waiting for
    it when it exits: the window in which a stop once raised ProcessLookupError.
    """
    for _ in range(100):
        child = Child("closes-output", ["sh", "-c", "exec >&- 2>&-; sleep 0.01"]).start()
        deadline = time.monotonic() + 5
        while child.returncode is None and time.monotonic() < deadline:
            child.send_signal(signal.SIGCONT)
            # As often as possible, yet handing the GIL to the thread that reaps it.
            time.sleep(0)
        assert child.stop() == 0


def test_picked_ports_lie_below_the_range_of_outgoing_connections() -> None:
    """A stopped worker or node is started again on its port while load runs beside it:
    no outgoing connection may have taken that port as its local port meanwhile."""
    ports = [free_port() for _ in range(50)]
    assert all(LOWEST_PICKED_PORT <= port < first_ephemeral_port() for port in ports)


def test_cluster_ports_leave_room_for_every_bus_port() -> None:
    taken = {LOWEST_PICKED_PORT + 1}
    ports = free_cluster_ports(12, taken)
    pairs = [port for node in ports for port in (node, node + BUS_OFFSET)]
    assert len(set(pairs)) == len(pairs) == 24
    assert not taken & set(pairs)
    assert all(LOWEST_PICKED_PORT <= port < first_ephemeral_port() for port in pairs)


def test_first_ephemeral_port_reads_the_kernel_range_or_assumes_linux_default(
    tmp_path: Path,
) -> None:
    range_file = tmp_path / "ip_local_port_range"
    range_file.write_text("40000\t60999\n")
    assert first_ephemeral_port(range_file) == 40000
    assert first_ephemeral_port(tmp_path / "missing") == 32768


def test_a_node_whose_port_was_taken_since_it_was_picked_starts_on_another(
    tmp_path: Path,
) -> None:
    nodes = RedisClusterProcesses(3, tmp_path / "nodes")
    picked = nodes.ports[0]
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", picked))
        squatter.listen()
        try:
            child = nodes.start_node_on_a_free_port(0)
            assert child.running
            assert nodes.ports[0] != picked
            assert nodes.nodes[nodes.ports[0]] is child
        finally:
            nodes.stop()
