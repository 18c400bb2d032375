"""Memory: forward peak and saved bytes, the training step, backward MACs, checkpointing and
fit's search. Imports count/, zoo/, devices/ and the base modules; never analysis/ or above."""
