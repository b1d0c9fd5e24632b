"""Fleet benchmark (``python tools/bench.py --fleet``): push reload latency, cold download, warm start.

Needs PostgreSQL (``--database-url`` or ``$CFREG_TEST_POSTGRES_URL``; a schema of its own is
created and dropped) and ``moto[server]`` + ``s3fs`` (an S3 API over HTTP on 127.0.0.1).

1. Promotion latency: four loader processes (separate caches, as four hosts) serve a
   registry on PostgreSQL; 30 promotions alternate between two models; for each, the time
   from just before the promoting commit to the last of the four loaders serving it. With
   push (``watch``: NOTIFY/LISTEN) and with 1 s polling (``start_auto_reload(1)``).
2. Cold download of a 13 MB model (U 20,000 x 128, V 5,600 x 128 float32) by a new loader
   with an empty cache, vs a raw s3fs ``get`` of the same objects.
3. Warm-cache start of a new loader vs ``np.load`` of the cached U and V.

Prints a markdown section to paste into docs/benchmarks.md under "Fleet".
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

PROMOTIONS = 30
HOSTS = 4
PUSH_TARGET_MS = 50.0
COLD_TARGET = 1.2
WARM_TARGET = 1.5


# --------------------------------------------------------------------------- worker (one "host")


def worker(registry_path: str, database_url: str, cache_dir: str, status_file: str, mode: str) -> None:
    from registry.loader import ModelLoader

    status = Path(status_file)

    def report(_old: str | None, new: str | None) -> None:
        temp = status.with_suffix(".tmp")
        temp.write_text(json.dumps({"model_id": new, "at": time.time()}))
        os.replace(temp, status)

    loader = ModelLoader(registry_path, database_url=database_url, artifact_cache_dir=cache_dir)
    if mode == "push":
        loader.start_watching(report, poll_seconds=30.0)
    else:
        loader.start_auto_reload(float(mode), report)
    report(None, loader.get_model_info().get("model_id"))
    stop = Path(status_file + ".stop")
    while not stop.exists():
        time.sleep(0.05)
    loader.close()


# --------------------------------------------------------------------------- helpers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_s3() -> tuple[Any, dict[str, str]]:
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "CFREG_STORAGE_OPTIONS": json.dumps({"endpoint_url": endpoint})}
    os.environ.update(env)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.05)
    boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
                 region_name="us-east-1").create_bucket(Bucket="bench")
    return server, env


def make_schema(base_url: str) -> tuple[str, str]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    engine = create_engine(base_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    url = make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False), schema


def drop_schema(base_url: str, schema: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(base_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def model_folder(root: Path, name: str, users: int, items: int, seed: int) -> str:
    import numpy as np

    from registry import write_model_folder

    rng = np.random.default_rng(seed)
    return str(write_model_folder(root / name, "als", rng.random((users, 128), dtype=np.float32),
                                  rng.random((items, 128), dtype=np.float32), params={"factors": 128}))


# --------------------------------------------------------------------------- measurements


def promotion_latencies(work: Path, database_url: str, mode: str) -> list[float]:
    from registry import ModelRegistry

    registry = ModelRegistry(work / f"reg-{mode}" / "registry.json", database_url=database_url, root=work,
                             export_json=False)
    ids = [registry.register_model(model_folder(work, f"{mode}-{i}", 2000, 500, i), "als", {}, {"ndcg@10": 0.1}, {})
           for i in range(2)]
    registry.promote_model(ids[0])
    hosts = []
    for index in range(HOSTS):
        status = work / f"{mode}-host{index}.json"
        process = subprocess.Popen([sys.executable, __file__, "--worker", str(registry.registry_path), database_url,
                                    str(work / f"{mode}-cache{index}"), str(status), mode],
                                   env={**os.environ, "PYTHONPATH": str(REPO)})
        hosts.append((process, status))

    def serving() -> list[tuple[str | None, float]]:
        result = []
        for _, status in hosts:
            try:
                data = json.loads(status.read_text())
                result.append((data["model_id"], data["at"]))
            except (FileNotFoundError, ValueError):
                result.append((None, 0.0))
        return result

    def wait_all(model_id: str, timeout: float = 60) -> list[float]:
        deadline = time.time() + timeout
        while True:
            current = serving()
            if all(served == model_id for served, _ in current):
                return [at for _, at in current]
            if time.time() > deadline:
                raise RuntimeError(f"{mode}: hosts did not converge on {model_id}: {current}")
            time.sleep(0.002)

    latencies = []
    try:
        wait_all(ids[0], 120)
        # Warm-up: each host loads both models once, so promotions measure the switch, not a download.
        for model_id in (ids[1], ids[0]):
            registry.promote_model(model_id)
            wait_all(model_id)
        for number in range(PROMOTIONS):
            target = ids[(number + 1) % 2]
            time.sleep(random.uniform(0.05, 0.3))  # promotions at random phases of the polling interval
            started = time.time()
            registry.promote_model(target)
            latencies.append((max(wait_all(target)) - started) * 1000)
    finally:
        for _, status in hosts:
            Path(str(status) + ".stop").touch()
        for process, _ in hosts:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
    return latencies


def cold_and_warm(work: Path, database_url: str, runs: int = 7) -> dict[str, Any]:
    import numpy as np

    from registry import ModelRegistry
    from registry.loader import ModelLoader
    from registry.storage.store import filesystem

    registry = ModelRegistry(work / "reg-cold" / "registry.json", database_url=database_url, root=work,
                             export_json=False, artifact_store="s3://bench/cold")
    folder = model_folder(work, "big", 20_000, 5_600, 9)
    model_id = registry.register_model(folder, "als", {}, {"ndcg@10": 0.1}, {})
    registry.promote_model(model_id)
    files = registry.get_model_files(model_id)
    total_bytes = sum(item["size_bytes"] for item in files)
    fs, _ = filesystem("s3://bench/cold")
    remote = [filesystem(item["uri"])[1] for item in files]

    from registry.serving.model_files import RECORD_QUERY, record_from_rows
    from registry.storage.cache import ArtifactCache
    from registry.storage.records import cached_model_files

    record = registry.context.read(lambda s: record_from_rows(list(s.execute(RECORD_QUERY, {"model_id": model_id}).all())))
    raw, cold, warm, npload, fetch = [], [], [], [], []
    for run in range(runs):
        target = work / f"raw{run}"
        target.mkdir()
        locals_ = [str(target / item["file_name"]) for item in files]
        started = time.perf_counter()
        fs.get(remote, locals_)
        raw.append((time.perf_counter() - started) * 1000)

        started = time.perf_counter()
        cached_model_files(record, ArtifactCache(work / f"fetch-cache{run}"))
        fetch.append((time.perf_counter() - started) * 1000)

        cache_dir = work / f"cold-cache{run}"
        started = time.perf_counter()
        loader = ModelLoader(registry.registry_path, database_url=database_url, artifact_cache_dir=cache_dir)
        cold.append((time.perf_counter() - started) * 1000)
        assert loader.artifact_cache.downloads == len(files)
        loader.close()

        started = time.perf_counter()
        loader = ModelLoader(registry.registry_path, database_url=database_url, artifact_cache_dir=cache_dir)
        warm.append((time.perf_counter() - started) * 1000)
        assert loader.artifact_cache.downloads == 0
        loader.close()
        u_path = loader.artifact_cache.object_path(next(i["sha256"] for i in files if i["file_name"] == "als_U.npy"))
        v_path = loader.artifact_cache.object_path(next(i["sha256"] for i in files if i["file_name"] == "als_V.npy"))
        started = time.perf_counter()
        np.load(u_path)
        np.load(v_path)
        npload.append((time.perf_counter() - started) * 1000)
        shutil.rmtree(target)
    return {"bytes": total_bytes, "raw": raw, "cold": cold, "warm": warm, "npload": npload, "fetch": fetch}


# --------------------------------------------------------------------------- report


def run(database_url: str | None = None) -> str:
    base = database_url or os.environ.get("CFREG_TEST_POSTGRES_URL")
    if not base:
        raise SystemExit("the fleet bench needs PostgreSQL: --database-url URL or $CFREG_TEST_POSTGRES_URL")
    server, _ = start_s3()
    url, schema = make_schema(base)
    work = Path(tempfile.mkdtemp(prefix="cfreg-bench-fleet-"))
    try:
        push = promotion_latencies(work, url, "push")
        poll = promotion_latencies(work, url, "1.0")
        transfer = cold_and_warm(work, url)
    finally:
        from registry import db

        db.forget_databases()
        drop_schema(base, schema)
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return render(push, poll, transfer)


def render(push: list[float], poll: list[float], transfer: dict[str, Any]) -> str:
    load = os.getloadavg()[0]
    cold_ratio = statistics.median(transfer["fetch"]) / statistics.median(transfer["raw"])
    start_ratio = statistics.median(transfer["cold"]) / statistics.median(transfer["raw"])
    warm_ratio = statistics.median(transfer["warm"]) / statistics.median(transfer["npload"])
    p99_push = percentile(push, 99)
    mb = transfer["bytes"] / 1e6

    def verdict(ok: bool) -> str:
        return "MET" if ok else "MISSED"

    lines = [
        f"`python tools/bench.py --fleet` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{os.cpu_count()} cores, load average {load:.1f}; PostgreSQL on 127.0.0.1, S3 = moto's server on 127.0.0.1.",
        "",
        "| measurement | p50 | p99 / other | n | target | verdict |",
        "|---|---:|---:|---:|---|---|",
        f"| promotion -> all {HOSTS} loaders serving, push (NOTIFY/LISTEN) | {statistics.median(push):.1f} ms | "
        f"{p99_push:.1f} ms | {len(push)} | p99 <= {PUSH_TARGET_MS:.0f} ms | {verdict(p99_push <= PUSH_TARGET_MS)} |",
        f"| promotion -> all {HOSTS} loaders serving, 1 s polling | {statistics.median(poll):.1f} ms | "
        f"{percentile(poll, 99):.1f} ms | {len(poll)} | - (reference) | - |",
        f"| cold download of a {mb:.1f} MB model into an empty cache (download + sha256 + rename) | "
        f"{statistics.median(transfer['fetch']):.1f} ms | {cold_ratio:.2f}x raw | {len(transfer['fetch'])} | "
        f"<= {COLD_TARGET}x raw s3fs get | {verdict(cold_ratio <= COLD_TARGET)} |",
        f"| cold start of a new loader, same model (download + sha256 + registry reads + np.load) | "
        f"{statistics.median(transfer['cold']):.1f} ms | {start_ratio:.2f}x raw | {len(transfer['cold'])} | - | - |",
        f"| raw s3fs `get` of the same objects | {statistics.median(transfer['raw']):.1f} ms | - | "
        f"{len(transfer['raw'])} | - | - |",
        f"| warm-cache start of a new loader | {statistics.median(transfer['warm']):.1f} ms | "
        f"{warm_ratio:.2f}x np.load | {len(transfer['warm'])} | <= {WARM_TARGET}x np.load | "
        f"{verdict(warm_ratio <= WARM_TARGET)} |",
        f"| np.load of the cached U and V | {statistics.median(transfer['npload']):.1f} ms | - | "
        f"{len(transfer['npload'])} | - | - |",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--worker":
        worker(*argv[1:6])
        return 0
    url = argv[argv.index("--database-url") + 1] if "--database-url" in argv else None
    sys.stdout.write(run(url))
    return 0


if __name__ == "__main__":
    sys.exit(main())
