"""Memory of a serving process: resident set size above a baseline, in fresh processes.

``python tools/bench.py --only memory`` writes one ALS model (U 26,000 x 128 and V 2,200 x 128
float32, the main bench's shapes), registers it and makes it the current best, then starts one
new Python process per mode. Each process imports the registry, opens a loader without loading
(``auto_load=False``: the database connection, compiled queries and the registry reads exist)
and reads its resident set size (``/proc/self/statm``): that is the baseline. Then it loads the
current best and reads the RSS again; in mmap mode also after one recommendation (which touches
one row of U and all of V) and after touching every page of U and V.

Target (issue: "a loader serving U + V holds at most 1.1x the arrays' bytes above its baseline
RSS; in mmap mode, only pages touched"): in-memory mode <= 1.1x the arrays' bytes, mmap mode
<= the bytes of the pages it touched plus 1 MiB of bookkeeping.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MiB = 2**20
TARGET_RATIO = 1.1
MMAP_SLACK_BYTES = MiB
RUNS = 3


def _rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _worker(registry_path: str, mmap: bool) -> dict[str, Any]:
    """One serving process: baseline, after loading, and (mmap) after touching pages."""
    import gc

    import numpy as np

    from registry import ModelLoader

    loader = ModelLoader(registry_path, auto_load=False, mmap=mmap)
    gc.collect()
    baseline = _rss_bytes()
    user_factors, item_factors, _ = loader.load_current_best()
    gc.collect()
    result: dict[str, Any] = {
        "array_bytes": int(user_factors.nbytes + item_factors.nbytes),
        "item_bytes": int(item_factors.nbytes),
        "row_bytes": int(user_factors.strides[0]),
        "loaded": _rss_bytes() - baseline,
    }
    if mmap:
        state = loader.get_current_model()
        assert state is not None
        state.recommend(0, k=10)
        result["one_recommendation"] = _rss_bytes() - baseline
        checksum = float(np.asarray(user_factors).sum() + np.asarray(item_factors).sum())
        result["all_touched"] = _rss_bytes() - baseline
        result["checksum"] = checksum
    loader.close()
    return result


def _make_registry(folder: Path) -> Path:
    from bench import FULL_SHAPES, make_base_folders

    from registry import ModelRegistry

    registry_path = folder / "artifacts" / "cf" / "registry.json"
    registry = ModelRegistry(registry_path, root=folder, export_json=False)
    relative = make_base_folders(folder / "artifacts" / "cf", FULL_SHAPES, 1)[0]
    model_id = registry.register_model(folder / relative, "als", metrics={"ndcg@10": 0.5})
    registry.promote_model(model_id)
    return registry_path


def _measure(registry_path: Path, mmap: bool) -> dict[str, Any]:
    command = [sys.executable, __file__, "--worker", str(registry_path), "mmap" if mmap else "memory"]
    output = subprocess.run(command, check=True, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])})
    return json.loads(output.stdout.strip().splitlines()[-1])


def _median_run(registry_path: Path, mmap: bool) -> dict[str, Any]:
    runs = [_measure(registry_path, mmap) for _ in range(RUNS)]
    runs.sort(key=lambda run: run["loaded"])
    return runs[len(runs) // 2]


def run() -> str:
    """Measure both modes; returns the markdown section."""
    folder = Path(tempfile.mkdtemp(prefix="cfreg-bench-memory-"))
    try:
        registry_path = _make_registry(folder)
        in_memory = _median_run(registry_path, mmap=False)
        mapped = _median_run(registry_path, mmap=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    arrays = in_memory["array_bytes"]
    touched_by_recommendation = mapped["item_bytes"] + mapped["row_bytes"]
    rows = [
        ("in memory: after `load_current_best`", in_memory["loaded"], f"<= {TARGET_RATIO}x arrays = {arrays * TARGET_RATIO / MiB:.1f} MiB",
         in_memory["loaded"] <= arrays * TARGET_RATIO),
        ("mmap: after `load_current_best` (nothing touched)", mapped["loaded"], f"<= {MMAP_SLACK_BYTES / MiB:.0f} MiB",
         mapped["loaded"] <= MMAP_SLACK_BYTES),
        ("mmap: after one recommendation (one row of U, all of V)", mapped["one_recommendation"],
         f"<= touched {touched_by_recommendation / MiB:.1f} MiB + 1 MiB",
         mapped["one_recommendation"] <= touched_by_recommendation + MMAP_SLACK_BYTES),
        ("mmap: after touching every page of U and V", mapped["all_touched"], f"<= arrays {arrays / MiB:.1f} MiB + 1 MiB",
         mapped["all_touched"] <= arrays + MMAP_SLACK_BYTES),
    ]
    load = [round(x, 2) for x in os.getloadavg()]
    lines = [
        "## Memory of a serving process",
        "",
        (f"`python tools/bench.py --only memory` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average "
         f"{load}: resident set size above the baseline of a fresh process that imported the registry and opened a "
         f"loader without loading; U {arrays - mapped['item_bytes']:,} bytes + V {mapped['item_bytes']:,} bytes "
         f"= {arrays / MiB:.1f} MiB of float32; median of {RUNS} processes per mode."),
        "",
        "| measurement | above baseline | x arrays | target | verdict |",
        "|---|---:|---:|---|---|",
    ]
    for name, grown, target, met in rows:
        lines.append(f"| {name} | {grown / MiB:.2f} MiB | {grown / arrays:.2f}x | {target} | {'met' if met else 'missed'} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        print(json.dumps(_worker(sys.argv[2], sys.argv[3] == "mmap")))
    else:
        sys.stdout.write(run())
