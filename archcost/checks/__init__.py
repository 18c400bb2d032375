"""Predictions checked against real runs: the allocator's peaks, torch's FLOP counter, the
training step. Imports analysis/ and everything below it."""
