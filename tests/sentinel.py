"""The Sentinel set the tests start (tools/sentinels.py)."""

from tools.sentinels import MASTER_NAME, SentinelSet

__all__ = ["MASTER_NAME", "SentinelSet"]
