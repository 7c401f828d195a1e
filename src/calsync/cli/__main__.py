"""`python -m calsync.cli`: the Typer app directly, without calsync.launch's hand-over to a running service."""

from calsync.cli import main

main()
