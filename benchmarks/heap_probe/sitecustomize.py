"""Loaded by a Python process started with this folder on PYTHONPATH (benchmarks/long_run.py
`--python-heap`): traces the process's Python allocations and writes, every 10 s, the bytes traced
now to the file named by ACCORD_HEAP_PROBE. Tracing costs memory and time of its own, so a run with
it measures the Python heap's trend, not the operator's usual RSS."""

from __future__ import annotations

import os
import threading
import time
import tracemalloc

OUT = os.environ.get("ACCORD_HEAP_PROBE")


def _probe(path: str) -> None:
    while True:
        time.sleep(10)
        traced, _ = tracemalloc.get_traced_memory()
        with open(f"{path}.new", "w") as out:
            out.write(f"{traced}\n")
        os.replace(f"{path}.new", path)  # whole, never half-written, for the reader


if OUT:
    tracemalloc.start()
    threading.Thread(target=_probe, args=(OUT,), daemon=True, name="heap-probe").start()
