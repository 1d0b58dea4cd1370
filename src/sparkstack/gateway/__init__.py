"""The HTTP gateway: one OpenAI-compatible endpoint in front of every model."""

from sparkstack.gateway.app import build_app

__all__ = ["build_app"]
