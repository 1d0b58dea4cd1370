"""Errors about bench data files (a damaged requests.csv, summary.json, or an
aiperf / genai-perf export): one line naming the file and what is wrong."""

from __future__ import annotations

from sparkstack.errors import SparkstackError


class BenchDataError(SparkstackError):
    """A bench file cannot be read: the message names the file, where, and what."""
