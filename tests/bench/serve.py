"""One benchmark server: `python -m tests.bench.serve graphql|handwritten|datalayer DATABASE_URL PORT`
(the data layer is a route of the hand-written app).

Served as `revampd-bff serve` serves the app: one uvicorn worker on uvloop and
httptools, with everything made at start-up frozen out of the collector's reach, and
logging at WARNING so that request log lines do not dominate what is measured. Rate limits
are on, as in service, with a bucket no bench can empty (BENCH_LIMITS): what they cost is
measured, not what throttling saves.
"""

from __future__ import annotations

import gc
import logging
import sys
from typing import Any

import uvicorn

from server.cli import UVICORN_OPTIONS
from server.settings import Settings

# One user sends every request of the bench, far more than any bucket in service allows.
BENCH_LIMITS: dict[str, Any] = {
    "rate_limit_enabled": True, "rate_limit_max_cost": 10**12, "rate_limit_restore_rate": 10**12,
}


def main() -> None:
    kind, url, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = Settings(database_url=url, log_level="WARNING", **BENCH_LIMITS)
    if kind == "graphql":
        from server.app import create_app

        app = create_app(settings)
    else:
        from tests.bench.handwritten import create_app as handwritten_app

        app = handwritten_app(settings)
    gc.collect()
    gc.freeze()
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", **UVICORN_OPTIONS)


if __name__ == "__main__":
    main()
