"""Interpreter settings for a long-running process on a hot path (the shipper, ``regwatch parse``)."""

from __future__ import annotations

import gc
import importlib
import sys

# Libraries the Elasticsearch client loads at import when they are installed, for features the
# shipper never uses: Arrow responses (pyarrow: 40 MB resident) and other HTTP stacks than urllib3
# (aiohttp, httpx, requests: 20 MB). Installed beside regwatch by MLflow, they were most of the
# shipper's resident memory (bench/shipper_bench.py: 110 of 146 MB before any line was read).
CLIENT_EXTRAS = ("pyarrow", "aiohttp", "httpx", "requests")


def tune_interpreter() -> None:
    """Keep the interpreter's housekeeping off the hot path of a long-running shipper.

    Garbage collector: every parsed line allocates a score of dicts; with the default thresholds
    a young collection runs every few dozen lines and a full one, walking every object the
    process holds (modules, pydantic models, the client), every few thousand. Freezing what exists
    at start hides it from the collector, and a larger young generation makes collections rare:
    events hold no cycles and are freed by reference counting.

    Switch interval: the writer thread needs the GIL back each time the network wakes it (request
    sent, each read of the response) while the reader thread parses; every wait leaves
    Elasticsearch idle between bulks. The default 5 ms was too long, and so was 1 ms: 0.2 ms.

    Measured with bench/shipper_bench.py: CPU per nginx line 20 -> 14.5 us, ratio 0.70 -> 0.82-0.90
    (5 ms -> 1 ms); ratio 0.75-0.77 -> 0.88-0.89 in two alternating pairs of runs (1 ms -> 0.2 ms;
    0.05 ms gave 0.73: switches then cost the reader more than they give the writer).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    sys.setswitchinterval(0.0002)


def import_client_lean() -> None:
    """Import the Elasticsearch client without :data:`CLIENT_EXTRAS`, where it is not imported yet.

    Call it before anything imports ``elasticsearch``. The client then offers no Arrow
    serializer and no aiohttp/httpx/requests node classes in this process (it uses urllib3, as
    regwatch's clients do); the libraries themselves stay importable by whoever needs them.
    """
    if "elasticsearch" in sys.modules:
        return
    hidden = [name for name in CLIENT_EXTRAS if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # import raises ImportError
    try:
        importlib.import_module("elasticsearch")
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
