"""`python -m sparkstack` runs the CLI."""

from sparkstack.cli.main import main

main()
