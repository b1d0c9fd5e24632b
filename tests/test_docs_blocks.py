"""Every ```python and ```bash block of README.md and docs/*.md runs as written.

How (see tests/docs_blocks.py and docs/contributing.md): each page runs in its own empty
temporary folder, in a fresh interpreter, its runnable blocks in page order. All python
blocks of a page share one namespace, like cells of one notebook; bash blocks run with
``bash -e -o pipefail`` in the same folder, with ``cfreg`` and ``python`` on ``PATH`` and
the project importable. Blocks that must not run are ```text, or carry an explicit
``<!-- docs-test: ... -->`` marker (skip with a reason, run only a named command, or
PostgreSQL-only).

The page runs are slow (the README runs the full demo); the convention check is quick.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from docs_blocks import (
    POSTGRES_ENV,
    REPO,
    Block,
    doc_pages,
    page_name,
    parse_blocks,
    problems,
    runnable_blocks,
    write_spec,
)

RUNNER = Path(__file__).with_name("docs_blocks.py")
PAGES = [page_name(path) for path in doc_pages()]


def _blocks(page: str) -> list[Block]:
    return parse_blocks((REPO / page).read_text(encoding="utf-8"), page)


# --------------------------------------------------------------------------- quick: the convention


def test_every_block_is_runnable_or_explicitly_not() -> None:
    found = [problem for page in PAGES for block in _blocks(page) for problem in problems(block)]
    assert found == []


def test_the_pages_have_runnable_blocks() -> None:
    # The page runs below prove something only if there is something to run.
    counts = {page: len(runnable_blocks(_blocks(page), postgres=False)) for page in PAGES}
    assert counts["README.md"] >= 2 and counts["docs/registry.md"] >= 1, counts
    assert sum(counts.values()) >= 15, counts


def test_parser_reads_languages_markers_and_lines() -> None:
    text = (
        "# Page\n\n```python\nx = 1\n```\n\n<!-- docs-test: skip needs a GPU -->\n```bash\nnvidia-smi\n```\n"
        "<!-- docs-test: run cfreg demo -->\n\n```bash\npip install . && cfreg demo\n```\n"
        "<!-- docs-test: postgres -->\n```python\nprint(2)\n```\n  ```text\n  output\n  ```\n"
    )
    blocks = parse_blocks(text, "page.md")
    assert [(b.line, b.lang, b.marker, b.marker_arg) for b in blocks] == [
        (3, "python", "", ""), (8, "bash", "skip", "needs a GPU"), (13, "bash", "run", "cfreg demo"),
        (17, "python", "postgres", ""), (20, "text", "", ""),
    ]
    assert blocks[4].code == "output\n"
    assert [problem for block in blocks for problem in problems(block)] == []
    chosen = runnable_blocks(blocks, postgres=False)
    assert [(b.line, b.code) for b in chosen] == [(3, "x = 1\n"), (13, "cfreg demo\n")]
    assert [b.line for b in runnable_blocks(blocks, postgres=True)] == [3, 13, 17]


@pytest.mark.parametrize(("text", "complaint"), [
    ("```\nls\n```\n", "language '(none)'"),
    ("```console\n$ ls\n```\n", "language 'console'"),
    ("<!-- docs-test: skip -->\n```bash\nls\n```\n", "needs a reason"),
    ("<!-- docs-test: run cfreg serve -->\n```bash\ncfreg demo\n```\n", "containing COMMAND verbatim"),
    ("<!-- docs-test: run print(1) -->\n```python\nprint(1)\n```\n", "containing COMMAND verbatim"),
    ("<!-- docs-test: later -->\n```bash\nls\n```\n", "unknown docs-test marker"),
    ("<!-- docs-test: skip old -->\n```text\nls\n```\n", "never runs"),
])
def test_convention_violations_are_reported(text: str, complaint: str) -> None:
    (block,) = parse_blocks(text, "page.md")
    assert any(complaint in problem for problem in problems(block)), problems(block)


def test_unclosed_block_is_an_error() -> None:
    with pytest.raises(ValueError, match="page.md:1: code block is never closed"):
        parse_blocks("```python\nx = 1\n", "page.md")


# --------------------------------------------------------------------------- slow: the pages run


def _environment(tmp_path: Path) -> dict[str, str]:
    """The project importable, ``cfreg`` and this interpreter's ``python`` first on PATH, no registry settings."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, command in (("cfreg", f'"{sys.executable}" -m registry "$@"'), ("python", f'"{sys.executable}" "$@"')):
        shim = bin_dir / name
        shim.write_text(f"#!/bin/sh\nexec {command}\n", encoding="utf-8")
        shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    env = {key: value for key, value in os.environ.items()
           if key not in ("CFREG_DATABASE_URL", "CFREG_ROOT", POSTGRES_ENV, "PYTHONPATH")}
    env["PATH"] = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = str(REPO)
    env["MPLBACKEND"] = "Agg"
    return env


def run_page(page: str, tmp_path: Path, postgres_url: str | None) -> subprocess.CompletedProcess[str]:
    """Run a page's runnable blocks in ``<tmp>/page``; returns the finished runner process."""
    blocks = runnable_blocks(_blocks(page), postgres=postgres_url is not None)
    folder = tmp_path / "page"
    folder.mkdir()
    spec = tmp_path / "blocks.json"
    write_spec(blocks, spec, postgres_url)
    return subprocess.run([sys.executable, str(RUNNER), str(spec)], cwd=folder, env=_environment(tmp_path),
                          capture_output=True, text=True, timeout=900, check=False)


@pytest.mark.slow
@pytest.mark.parametrize("page", [page for page in PAGES if runnable_blocks(_blocks(page), postgres=True)])
def test_page_blocks_run_as_written(page: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    has_postgres_blocks = any(block.marker == "postgres" for block in _blocks(page))
    postgres_url = request.getfixturevalue("postgres_url") if has_postgres_blocks and os.environ.get(POSTGRES_ENV) else None
    if not runnable_blocks(_blocks(page), postgres=postgres_url is not None):
        pytest.skip(f"{page} has only PostgreSQL blocks and {POSTGRES_ENV} is not set")
    completed = run_page(page, tmp_path, postgres_url)
    assert completed.returncode == 0, f"{completed.stdout[-6000:]}\n{completed.stderr[-6000:]}"
    expected = runnable_blocks(_blocks(page), postgres=postgres_url is not None)
    assert completed.stdout.count("--- ") >= len(expected)


@pytest.mark.slow
def test_a_failing_block_fails_the_page_and_names_it(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("```python\nvalue = 41\n```\n\n```bash\ntest -d .\n```\n\n```python\nassert value == 42, value\n```\n")
    blocks = runnable_blocks(parse_blocks(page.read_text(), "page.md"), postgres=False)
    spec = tmp_path / "blocks.json"
    write_spec(blocks, spec, None)
    folder = tmp_path / "run"
    folder.mkdir()
    completed = subprocess.run([sys.executable, str(RUNNER), str(spec)], cwd=folder, capture_output=True,
                               text=True, timeout=60, check=False)
    assert completed.returncode == 1
    assert "FAILED page.md:9" in completed.stdout and "AssertionError: 41" in completed.stderr
    assert "--- page.md:5 (bash)" in completed.stdout
