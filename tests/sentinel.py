"""The Sentinel set the tests start (tools/sentinels.py)."""

from ws_counter.tools.sentinels import MASTER_NAME, SentinelSet

__all__ = ["MASTER_NAME", "SentinelSet"]
