"""`python -m calsync`: the same entry point as the `calsync` command."""

from calsync.launch import main

main()
