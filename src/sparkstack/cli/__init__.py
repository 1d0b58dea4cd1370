"""The `sparkstack` command line: thin adapters over the Python API."""
