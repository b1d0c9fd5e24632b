"""The CLI as a user meets it: each command a fresh process, wall time from start to exit.

``python tools/bench.py --only cli --sizes 1000`` fills a registry to N models (the bulk path:
one ``import_registry_json``), then times ``cfreg --help``, ``cfreg list``, ``cfreg list --json``
and ``python -c "import registry"`` as new processes, in alternation, 9 runs each after one
warm-up (the page cache is warm, as for a user typing commands one after another).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGETS_S = {"cfreg --help": 0.2, "cfreg list": 0.4}
RUNS = 9


def _fill(folder: Path, size: int) -> Path:
    from bench import BASE_FOLDERS, QUICK_SHAPES, make_base_folders

    from registry import ModelRegistry

    bases = make_base_folders(folder / "artifacts" / "cf", QUICK_SHAPES, BASE_FOLDERS)
    models = {
        f"als_v{index:06d}": {
            "model_type": "als", "version": f"v{index:06d}", "path": bases[index % len(bases)],
            "created_at": f"2026-01-01T00:{index // 3600 % 60:02d}:{index // 60 % 60:02d}.{index % 60:02d}",
            "metrics": {"ndcg@10": (index * 7919 % 1000) / 1000, "recall@10": (index * 104729 % 1000) / 1000},
            "hyperparameters": {"factors": 32}, "training_info": {"training_time_seconds": 60.0},
            "status": "active",
        }
        for index in range(1, size + 1)
    }
    document = folder / "seed.json"
    document.write_text(json.dumps({"version": "1.0", "models": models, "current_best": None,
                                    "metadata": {"created_at": "2026-01-01T00:00:00"}}), encoding="utf-8")
    registry_path = folder / "artifacts" / "cf" / "registry.json"
    registry = ModelRegistry(registry_path, root=folder)
    registry.import_registry_json(document)
    registry.select_best_model()
    return registry_path


def _compile_package() -> None:
    """Write the package's bytecode, as installing a wheel does.

    An editable install compiles on first import unless ``PYTHONDONTWRITEBYTECODE`` is set
    (as on CI machines): without the cache every command would compile the package's source
    (~0.1 s), a cost users of an installed package do not pay.
    """
    import compileall

    import registry

    compileall.compile_dir(str(Path(registry.__file__).parent), quiet=1)


def run(sizes: list[int]) -> str:
    """Measure at each size; returns the markdown section."""
    cfreg = shutil.which("cfreg") or str(Path(sys.executable).with_name("cfreg"))
    _compile_package()
    rows = []
    for size in sorted(sizes):
        folder = Path(tempfile.mkdtemp(prefix="cfreg-bench-cli-"))
        try:
            registry_path = _fill(folder, size)
            commands = {
                "python -c 'import registry'": [sys.executable, "-c", "import registry"],
                "cfreg --help": [cfreg, "--help"],
                "cfreg list": [cfreg, "list", "--registry", str(registry_path)],
                "cfreg list --json": [cfreg, "list", "--registry", str(registry_path), "--json"],
            }
            env = {**os.environ, "COLUMNS": "160"}
            times: dict[str, list[float]] = {name: [] for name in commands}
            for attempt in range(RUNS + 1):
                for name, command in commands.items():
                    started = time.perf_counter()
                    subprocess.run(command, cwd=folder, env=env, stdout=subprocess.DEVNULL, check=True)
                    if attempt:
                        times[name].append(time.perf_counter() - started)
            for name, sample in times.items():
                rows.append((name, size, statistics.median(sample), max(sample)))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    load = [round(x, 2) for x in os.getloadavg()]
    lines = [
        "## The CLI as a fresh process",
        "",
        (f"`python tools/bench.py --only cli` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average "
         f"{load}: wall time of each command as a new process, median and max of {RUNS} runs after one warm-up, "
         "SQLite, the registry filled by one import, the package's bytecode compiled."),
        "",
        "| command | models | median s | max s | target | verdict |",
        "|---|---:|---:|---:|---|---|",
    ]
    for name, size, median, worst in rows:
        target = TARGETS_S.get(name)
        verdict = "-" if target is None else ("met" if median <= target else f"missed by {median - target:.2f} s")
        lines.append(f"| `{name}` | {size:,} | {median:.3f} | {worst:.3f} | "
                     f"{'<= ' + format(target, 'g') + ' s' if target else '-'} | {verdict} |")
    return "\n".join(lines) + "\n"
