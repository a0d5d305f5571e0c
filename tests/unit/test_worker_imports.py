"""A worker process loads the delivery path only: not the API's models (pydantic) or its web
framework (Starlette). They took a worker process's start from about 0.35 to 0.7 CPU seconds,
and a benchmark whose clock started with serve counted that in every notification."""

from __future__ import annotations

import subprocess
import sys

WORKER_MODULES = "gateway.cli, gateway.worker_main, gateway.delivery, gateway.outbound"
API_ONLY = ("pydantic", "starlette", "gateway.wire", "gateway.api.common")


def test_a_worker_process_does_not_import_the_api() -> None:
    check = (
        f"import sys, {WORKER_MODULES}; "
        f"print(' '.join(m for m in {API_ONLY!r} if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, check=True
    ).stdout.split()
    assert loaded == []
