"""Table tests of settings: environment and flags in, one frozen Settings out."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from ws_counter.worker.errors import SettingsError
from ws_counter.worker.settings import SETTINGS, Settings, insecure_redis, load_settings

pytestmark = pytest.mark.unit


def test_defaults_without_environment() -> None:
    """With nothing set, every field has its documented default."""
    assert load_settings({}) == Settings()


@pytest.mark.parametrize(
    ("env", "field", "value"),
    [
        ({"WS_HOST": "0.0.0.0"}, "host", "0.0.0.0"),
        ({"WS_PORT": "9001"}, "port", 9001),
        ({"REDIS_URL": "redis://r:6379/1"}, "redis_url", "redis://r:6379/1"),
        ({"REDIS_SENTINELS": "a:26379, b:26380"}, "redis_sentinels", (("a", 26379), ("b", 26380))),
        ({"REDIS_SENTINELS": ""}, "redis_sentinels", ()),
        ({"REDIS_MASTER_NAME": "m"}, "redis_master_name", "m"),
        ({"WS_COMPRESSION": "yes"}, "compression", True),
        ({"WS_COMPRESSION": "off"}, "compression", False),
        ({"WS_DRAIN_TIMEOUT": "2.5"}, "drain_timeout", 2.5),
        ({"WS_LOG_FORMAT": "text"}, "log_format", "text"),
        ({"WS_DEDUP_TTL": "60"}, "dedup_ttl", 60),
    ],
)
def test_environment_sets_fields(env: dict[str, str], field: str, value: object) -> None:
    """Each environment variable parses into its field."""
    assert getattr(load_settings(env), field) == value


def test_flags_win_over_environment() -> None:
    """A flag given on the command line overrides the environment."""
    settings = load_settings({"WS_PORT": "1", "WS_HOST": "h"}, {"port": "2", "host": None})
    assert (settings.port, settings.host) == (2, "h")


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"WS_PORT": "eighty"}, "WS_PORT"),
        ({"WS_PORT": "70000"}, "WS_PORT"),
        ({"WS_MAX_CONNECTIONS": "0"}, "WS_MAX_CONNECTIONS"),
        ({"WS_DRAIN_TIMEOUT": "-1"}, "WS_DRAIN_TIMEOUT"),
        ({"WS_DRAIN_TIMEOUT": "nan"}, "WS_DRAIN_TIMEOUT"),
        ({"WS_COMPRESSION": "maybe"}, "WS_COMPRESSION"),
        ({"WS_LOG_FORMAT": "xml"}, "WS_LOG_FORMAT"),
        ({"REDIS_SENTINELS": "nohostport"}, "REDIS_SENTINELS"),
    ],
)
def test_invalid_values_name_the_variable(env: dict[str, str], named: str) -> None:
    """A bad value is refused with a message naming the variable."""
    with pytest.raises(SettingsError, match=named):
        load_settings(env)


def test_invalid_flag_names_the_flag() -> None:
    """A bad flag value names the flag, not the variable."""
    with pytest.raises(SettingsError, match="--port"):
        load_settings({}, {"port": "x"})


def test_every_field_has_exactly_one_setting() -> None:
    """The settings table and the dataclass describe the same fields."""
    assert sorted(s.field for s in SETTINGS) == sorted(f.name for f in dataclasses.fields(Settings))
    assert len({s.env for s in SETTINGS}) == len(SETTINGS)


def test_settings_are_frozen() -> None:
    """Settings cannot change after they are built."""
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().port = 1  # type: ignore[misc]


def test_every_setting_is_documented() -> None:
    """docs/protocol.md names every flag and environment variable, so the docs cannot rot."""
    docs = (Path(__file__).parent.parent / "docs" / "protocol.md").read_text()
    missing = [s.env for s in SETTINGS if f"`{s.env}`" not in docs or f"`{s.flag}`" not in docs]
    assert missing == []


# (settings, warned): Redis across a network without TLS and without a password is
# warned about at start; TLS, a password or a Redis on this host is not.
INSECURE_REDIS: list[tuple[dict[str, str], bool]] = [
    ({}, False),
    ({"REDIS_URL": "redis://localhost:6379/0"}, False),
    ({"REDIS_URL": "redis://[::1]:6379/0"}, False),
    ({"REDIS_URL": "redis://redis:6379/0"}, True),
    ({"REDIS_URL": "redis://10.0.0.5:6379/0"}, True),
    ({"REDIS_URL": "rediss://redis:6379/0"}, False),
    ({"REDIS_URL": "redis://redis:6379/0", "REDIS_TLS": "true"}, False),
    ({"REDIS_URL": "redis://redis:6379/0", "REDIS_PASSWORD": "pw"}, False),
    ({"REDIS_URL": "redis://:pw@redis:6379/0"}, False),
    ({"REDIS_SENTINELS": "127.0.0.1:26379,10.0.0.2:26379"}, True),
    ({"REDIS_CLUSTER_NODES": "127.0.0.1:7000"}, False),
]


@pytest.mark.parametrize(("env", "warned"), INSECURE_REDIS)
def test_an_unprotected_redis_across_a_network_is_warned_about(
    env: dict[str, str], warned: bool
) -> None:
    assert (insecure_redis(load_settings(env)) is not None) is warned


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"session_window": 1}, "WS_SESSION_WINDOW"),
        ({"redis_url": "redis://a:6379/0", "redis_cluster_nodes": (("b", 7000),)}, "REDIS_URL"),
        ({"redis_sentinels": (("s", 26379),), "redis_cluster_nodes": (("b", 7000),)}, "REDIS_"),
        ({"redis_tls_cert_file": "/c.crt"}, "REDIS_TLS_KEY_FILE"),
        ({"redis_url": "redis://:pw@a:6379/0", "redis_password": "pw"}, "REDIS_PASSWORD"),
    ],
)
def test_settings_made_directly_keep_the_same_invariants_as_loaded_ones(
    fields: dict[str, Any], named: str
) -> None:
    with pytest.raises(SettingsError, match=named):
        Settings(**fields)
