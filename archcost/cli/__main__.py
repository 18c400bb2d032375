"""python -m archcost.cli"""

from archcost.cli import entry

entry()
