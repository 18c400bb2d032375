"""The one device table: datasheet peaks, bandwidth and memory of each accelerator, with
their sources, and the one name resolver every command uses. Imports nothing of archcost."""

from .budgets import GIB, describe, parse_memory  # noqa: F401
from .table import (ALIASES, DEVICES, DTYPE_KEYS, DevicePeak, by_key, cpu_name, device_name, find_peak,  # noqa: F401
                    names, peak_dtype, peak_key, slug)
