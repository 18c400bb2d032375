"""Which columns each command shows, in order (the CSVs carry every column)."""

TABLE_COLUMNS = ["model", "input_shape", "params", "macs", "flops", "activations",
                 "activation_bytes", "param_bytes", "saved_bytes", "peak_bytes", "train_bytes"]
LAYER_COLUMNS = ["layer", "type", "output_shape", "params", "macs", "activations",
                 "activation_bytes", "saved_bytes", "peak_bytes", "aliased"]
TRAIN_COLUMNS = ["trainable_params", "backward_macs", "train_macs", "train_peak_bytes", "train_peak_phase"]
LATENCY_COLUMNS = ["latency_ms", "latency_p20_ms", "latency_p80_ms", "latency_spread", "images_per_s",
                   "achieved_tflops", "peak_fraction"]
FIT_COLUMNS = ["model", "batch", "needed_bytes", "headroom_bytes", "weight_bytes", "optimizer_state_bytes",
               "gradients_at_peak", "activations_at_peak", "transient_at_peak", "scratch_at_peak", "input_bytes",
               "peak_phase"]
ROOFLINE_LAYER_COLUMNS = ["layer", "type", "macs", "bytes_read", "bytes_written", "arithmetic_intensity", "rate",
                          "time_compute_ms", "time_memory_ms", "time_bound_ms", "bound", "share_of_bound",
                          "ridge_batch"]
ROOFLINE_SUMMARY_COLUMNS = ["model", "batch_size", "flops", "bytes_moved", "arithmetic_intensity", "time_bound_ms",
                            "time_bound_per_image_ms", "bound_share_memory", "bound_share_never_compute",
                            "ridge_batch_heaviest", "last_to_cross"]
