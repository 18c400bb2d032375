"""python -m archcost: the command line."""

from archcost.cli import entry

entry()
