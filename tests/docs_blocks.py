"""Read the fenced code blocks of README.md and docs/*.md, and run a page's blocks in order.

The convention (also in docs/contributing.md):

- ```` ```python ```` and ```` ```bash ```` blocks run. A page runs in its own empty
  folder, its blocks in page order: all python blocks of a page share one interpreter
  namespace (a later block may use what an earlier one defined), each bash block runs
  in ``bash -e -o pipefail`` in that folder. ``registry`` is importable and ``cfreg``
  and ``python`` are on ``PATH``.
- ```` ```text ```` (output samples, servers, signatures), ```` ```json ```` and
  ```` ```sql ```` (tests/test_reporting.py runs those) blocks do not run. Any other
  language, or none, is an error: every block is either runnable or explicitly not.
- An HTML comment on the line just before a runnable block changes how it runs:

  - ``<!-- docs-test: skip REASON -->``: not run (a reason is required);
  - ``<!-- docs-test: run COMMAND -->``: a bash block of which only ``COMMAND`` runs
    (``COMMAND`` must appear verbatim in the block), e.g. the install line whose demo part runs;
  - ``<!-- docs-test: postgres -->``: runs only when ``CFREG_TEST_POSTGRES_URL`` is set,
    with ``CFREG_DATABASE_URL`` pointing at a fresh PostgreSQL schema of its own.

``python tests/docs_blocks.py BLOCKS.json`` is the runner: the test writes the page's
blocks to a JSON file and runs this file in a fresh interpreter inside the page's folder.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUNNABLE = ("python", "bash")
NOT_RUN = ("text", "json", "sql")
FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[^`\s]*)\s*$")
MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<kind>[a-z]+)\s*(?P<arg>.*?)\s*-->\s*$")
MARKER_KINDS = ("skip", "run", "postgres")
POSTGRES_ENV = "CFREG_TEST_POSTGRES_URL"


@dataclass(frozen=True)
class Block:
    """One fenced block: where it starts (1-based line of the fence), its language, code and marker."""

    page: str
    line: int
    lang: str
    code: str
    marker: str = ""
    marker_arg: str = ""

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def doc_pages() -> list[Path]:
    """README.md and every docs/*.md, in a stable order."""
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def page_name(path: Path) -> str:
    return str(path.relative_to(REPO))


def parse_blocks(text: str, page: str) -> list[Block]:
    """Every fenced block of a markdown page, with the ``docs-test`` marker just above it."""
    blocks: list[Block] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        start, indent = index, opening["indent"]
        index += 1
        body: list[str] = []
        while index < len(lines) and not re.match(rf"^{re.escape(indent)}```\s*$", lines[index]):
            body.append(lines[index])
            index += 1
        if index == len(lines):
            raise ValueError(f"{page}:{start + 1}: code block is never closed")
        previous = start - 1
        while previous >= 0 and not lines[previous].strip():
            previous -= 1
        marker = MARKER.match(lines[previous]) if previous >= 0 else None
        blocks.append(Block(
            page=page, line=start + 1, lang=opening["lang"], code=textwrap.dedent("\n".join(body)) + "\n",
            marker=marker["kind"] if marker else "", marker_arg=marker["arg"] if marker else "",
        ))
        index += 1
    return blocks


def problems(block: Block) -> list[str]:
    """Why a block breaks the convention (empty: it is fine)."""
    found = []
    if block.lang not in RUNNABLE + NOT_RUN:
        found.append(f"{block.where}: language {block.lang or '(none)'!r}: use one of {', '.join(RUNNABLE + NOT_RUN)}")
    if block.marker:
        if block.lang not in RUNNABLE:
            found.append(f"{block.where}: docs-test marker on a block that never runs ({block.lang})")
        if block.marker not in MARKER_KINDS:
            found.append(f"{block.where}: unknown docs-test marker {block.marker!r} (known: {', '.join(MARKER_KINDS)})")
        elif block.marker == "skip" and not block.marker_arg:
            found.append(f"{block.where}: `docs-test: skip` needs a reason")
        elif block.marker == "run" and (block.lang != "bash" or not block.marker_arg or block.marker_arg not in block.code):
            found.append(f"{block.where}: `docs-test: run COMMAND` needs a bash block containing COMMAND verbatim")
        elif block.marker == "postgres" and block.marker_arg:
            found.append(f"{block.where}: `docs-test: postgres` takes no argument")
    return found


def runnable_blocks(blocks: list[Block], *, postgres: bool) -> list[Block]:
    """The blocks a page run executes, in order (``run`` markers already applied)."""
    chosen = []
    for block in blocks:
        if block.lang not in RUNNABLE or block.marker == "skip" or (block.marker == "postgres" and not postgres):
            continue
        if block.marker == "run":
            block = Block(block.page, block.line, block.lang, block.marker_arg + "\n", block.marker, block.marker_arg)
        chosen.append(block)
    return chosen


# --------------------------------------------------------------------------- runner (own process)


def run_blocks(blocks: list[Block], postgres_url: str | None) -> int:
    """Run the blocks in the working directory; 0 when all pass, else 1 after naming the failing block."""
    namespace: dict[str, object] = {"__name__": "__main__"}
    for block in blocks:
        print(f"--- {block.where} ({block.lang}{', ' + block.marker if block.marker else ''})", flush=True)
        saved = os.environ.get("CFREG_DATABASE_URL")
        if block.marker == "postgres":
            assert postgres_url, "a postgres block needs a database URL"
            os.environ["CFREG_DATABASE_URL"] = postgres_url
        try:
            if block.lang == "python":
                exec(compile(block.code, block.where, "exec"), namespace)  # noqa: S102 - running the docs is the point
            else:
                completed = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", block.code], check=False)
                if completed.returncode != 0:
                    print(f"FAILED {block.where}: bash exited with {completed.returncode}", flush=True)
                    return 1
        except BaseException:  # noqa: BLE001 - report any failure of a documented example
            traceback.print_exc()
            print(f"FAILED {block.where}", flush=True)
            return 1
        finally:
            if saved is None:
                os.environ.pop("CFREG_DATABASE_URL", None)
            else:
                os.environ["CFREG_DATABASE_URL"] = saved
        sys.stdout.flush()
        sys.stderr.flush()
    return 0


def main(argv: list[str]) -> int:
    # Like `python -c`: the working directory (the page's folder) is importable, tests/ is not.
    sys.path[0] = os.getcwd()
    spec = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    return run_blocks([Block(**block) for block in spec["blocks"]], spec.get("postgres_url"))


def write_spec(blocks: list[Block], path: Path, postgres_url: str | None) -> None:
    path.write_text(json.dumps({"blocks": [asdict(block) for block in blocks], "postgres_url": postgres_url}),
                    encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
