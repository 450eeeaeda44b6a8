"""`python -m neurrator` runs the command line."""

from neurrator.cli import main

main()
