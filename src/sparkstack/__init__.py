"""sparkstack: several local LLMs behind one safe, fast, observable OpenAI-compatible endpoint."""

__version__ = "0.1.0"
