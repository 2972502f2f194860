"""`python -m clawnsole` runs the command line."""

from clawnsole.cli.main import main

main()
