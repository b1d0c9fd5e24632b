"""A serving host of the fleet tests and bench: one watching loader that reports what it serves.

Run as ``python fleet_worker.py REGISTRY_PATH DATABASE_URL CACHE_DIR STATUS_FILE [POLL_SECONDS|push]``.
It writes ``{"model_id", "at"}`` (``at``: ``time.time()`` of the swap) to STATUS_FILE,
atomically, at start and after every change, and exits when STATUS_FILE + ``.stop`` appears.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent
for _path in (str(TESTS_DIR), str(TESTS_DIR.parent)):
    if _path not in sys.path:
        sys.path.insert(0, _path)


def main() -> None:
    registry_path, database_url, cache_dir, status_file = sys.argv[1:5]
    mode = sys.argv[5] if len(sys.argv) > 5 else "push"
    from registry.loader import ModelLoader

    status = Path(status_file)

    def report(_old: str | None, new: str | None) -> None:
        temp = status.with_suffix(".tmp")
        temp.write_text(json.dumps({"model_id": new, "at": time.time(), "pid": os.getpid()}))
        os.replace(temp, status)

    loader = ModelLoader(registry_path, database_url=database_url, artifact_cache_dir=cache_dir)
    if mode == "push":
        loader.start_watching(report, poll_seconds=30.0)  # only a notification (or a reconnect) reloads quickly
    else:
        loader.start_auto_reload(float(mode), report)
    report(None, loader.get_model_info().get("model_id"))
    stop = Path(status_file + ".stop")
    while not stop.exists():
        time.sleep(0.05)
    loader.close()


if __name__ == "__main__":
    main()
