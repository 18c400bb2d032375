"""The roofline: per-operator bytes and time bounds, the CPU calibration, per-layer rows.
Imports count/, devices/ and the base modules; never analysis/ or above."""
