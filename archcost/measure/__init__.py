"""Real runs: timing a forward on the device, walking the CPU and CUDA allocators' events.
Imports count/ and the base modules only."""
