"""The committed decode report: what a generated token costs against the KV cache's length
for hf:gpt2, hf:llama and hf:mistral (their transformers configurations' default sizes: GPT-2
small; LLaMA-7B; Mistral-7B with grouped-query attention and a 4,096-token sliding window),
in bfloat16 on an H100 SXM's roofline. It runs

    archcost sweep hf:gpt2 hf:llama hf:mistral --decode 128,256,...,8192 --target h100-sxm --dtype bfloat16

in this process, after stubbing torchvision's meta registrations (this machine's torchvision
wheel is a CUDA build beside a CPU torch, and transformers imports it: see tests/conftest.py),
and states the wall time and the machine's load. Everything is counted on meta tensors.

    python bench/decode_report.py [--out reports]
"""

import argparse
import os
import sys
import time
import types

ARGS = ["sweep", "hf:gpt2", "hf:llama", "hf:mistral", "--decode", "128,256,...,8192", "--target", "h100-sxm",
        "--dtype", "bfloat16"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="reports")
    out = parser.parse_args().out
    sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
    from archcost.cli import main as cli

    load = os.getloadavg()[0]
    start = time.perf_counter()
    try:
        cli(ARGS + ["--out", out])
    except SystemExit as exc:
        if exc.code:
            raise
    seconds = time.perf_counter() - start
    print(f"archcost {' '.join(ARGS)}: {seconds:.0f} s wall on {os.cpu_count()} cores, load average "
          f"{load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end", file=sys.stderr)


if __name__ == "__main__":
    main()
