"""`python -m tunescope.cli`: the same command line as `tunescope`."""

from tunescope.cli.commands import main

main()
