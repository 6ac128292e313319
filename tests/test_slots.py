"""Which slot map a worker follows on a Redis Cluster (ws_counter.worker.core.slots), as tables."""

from __future__ import annotations

import pytest

from ws_counter.worker.core.slots import Topology, View, newest_view, parse_cluster_info

pytestmark = pytest.mark.unit

OLD = Topology((0, 8192), (8191, 16383), (("a", 1), ("b", 1)))
NEW = Topology((0, 8192), (8191, 16383), (("c", 1), ("b", 1)))
NONE = Topology((), (), ())

# (views, the map followed)
VIEWS: list[tuple[str, list[View], Topology | None]] = [
    ("one view", [View(OLD, True, 3)], OLD),
    # A primary cut off from the rest serves its old map; the majority failed it over.
    ("the majority's newer epoch", [View(OLD, False, 3), View(NEW, True, 4)], NEW),
    (
        "a healthy view over a higher unhealthy epoch",
        [View(OLD, False, 9), View(NEW, True, 4)],
        NEW,
    ),
    ("the higher epoch among healthy views", [View(NEW, True, 5), View(OLD, True, 4)], NEW),
    ("only an unhealthy view: better than none", [View(OLD, False, 3)], OLD),
    ("a node that claims no slots is ignored", [View(NONE, True, 9), View(OLD, True, 3)], OLD),
    ("no view", [], None),
]


@pytest.mark.parametrize(("name", "views", "followed"), VIEWS, ids=[v[0] for v in VIEWS])
def test_the_newest_view_of_a_node_that_reaches_a_majority_is_followed(
    name: str, views: list[View], followed: Topology | None
) -> None:
    assert newest_view(views) == followed


def test_cluster_info_gives_the_state_and_the_current_epoch() -> None:
    text = "cluster_enabled:1\r\ncluster_state:fail\r\ncluster_current_epoch:12\r\n"
    assert parse_cluster_info(text) == (False, 12)
    assert parse_cluster_info("cluster_state:ok\r\n") == (True, 0)
