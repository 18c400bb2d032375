"""The click group every command module registers with."""

import click

from archcost.cli.group import Group

@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="archcost")
def main():
    """What does a CNN architecture really cost? Parameters, multiply-adds (MACs),
    activation memory and time of the classic CNN lineage, measured.

    Conventions: 1 MAC = one fused multiply-add; FLOPs = 2 x MACs; *_bytes are bytes.
    """
