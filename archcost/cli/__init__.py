"""archcost's command line: the click group (``app.py``), what the commands share
(``common.py``) and one thin module per command: parse the options, call the library,
render with ``archcost.report``. Nothing here imports torch until a command runs."""

from archcost.cli.app import main
from archcost.cli import (check, devices, diff, fit, layers, listing, memory, ops, plan,  # noqa: F401
                          plot, reproduce, roofline, sweep, table)
from archcost.cli.common import parse_batch_sizes  # noqa: F401


def entry():  # console script
    main()
