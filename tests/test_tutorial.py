"""docs/tutorial.md, run top to bottom: every ```bash block, in order, in a fresh folder.

Each block runs as one ``bash -e -o pipefail`` script (so ``&``, ``$!`` and ``kill`` work as in a
terminal) in its own session, killed as a group afterwards so a failed block leaves no server
behind. ``tastebud`` is a script on PATH that runs this interpreter's ``-m tastebud`` with this
checkout's sources; the page's port is replaced by a free loopback one.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

import tastebud as tb

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "tutorial.md"
PAGE_PORT = "8765"
BLOCK_TIMEOUT_S = 300
# Says which command failed: with -e, bash stops there and this is the last line on stderr.
PROLOGUE = "trap 'echo \"tutorial: exit $? from: $BASH_COMMAND\" >&2' ERR\n"


@dataclass
class Block:
    source: str
    returncode: int
    stdout: str
    stderr: str


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bash_blocks(markdown: str) -> list[str]:
    """The ```bash fenced blocks of a page, in order."""
    return re.findall(r"^```bash\n(.*?)^```\s*$", markdown, flags=re.MULTILINE | re.DOTALL)


def _environment(bin_dir: Path) -> dict[str, str]:
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "tastebud"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m tastebud "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    env = dict(os.environ)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH")) if p)
    env["COLUMNS"] = "200"  # rich tables unwrapped, so a title stays on one line
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"  # loopback only, never through a proxy
    return env


def run_page(markdown: str, workdir: Path, env: dict[str, str]) -> list[Block]:
    """Run every bash block of ``markdown`` in ``workdir``; stop after the first that fails."""
    done: list[Block] = []
    for index, source in enumerate(bash_blocks(markdown)):
        out, err = workdir.parent / f"block{index}.out", workdir.parent / f"block{index}.err"
        with out.open("w") as stdout, err.open("w") as stderr:
            # files, not pipes: a server left running by a failed block must not hold the test open
            proc = subprocess.Popen(
                ["bash", "-e", "-o", "pipefail", "-c", PROLOGUE + source],
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
            )
            try:
                code = proc.wait(timeout=BLOCK_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                code = -1
            finally:
                try:  # the block's session: its background jobs included
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                proc.wait()
        done.append(Block(source, code, out.read_text(), err.read_text()))
        if code != 0:
            break
    return done


def _failure(block: Block) -> str:
    return f"exit {block.returncode} from block:\n{block.source}\nstdout:\n{block.stdout[-3000:]}\nstderr:\n{block.stderr[-3000:]}"


def _block(blocks: list[Block], command: str) -> Block:
    return next(b for b in blocks if command in b.source)


@pytest.mark.slow
def test_tutorial_runs_top_to_bottom(tmp_path):
    page = PAGE.read_text()
    assert PAGE_PORT in page, "the serve step should use the port the test replaces"
    work = tmp_path / "work"
    work.mkdir()
    blocks = run_page(page.replace(PAGE_PORT, str(_free_port())), work, _environment(tmp_path / "bin"))
    assert len(blocks) == len(bash_blocks(page)) and all(b.returncode == 0 for b in blocks), _failure(blocks[-1])
    commands = " ".join(b.source for b in blocks)
    for step in ("data synth", "data info", "evaluate", "tune", "train", "recommend", "serve", "curl", "kill"):
        assert step in commands, step

    assert "300" in _block(blocks, "data info").stdout and "explicit" in _block(blocks, "data info").stdout
    results = (work / "results.md").read_text()
    assert all(name in results for name in ("popular", "bias", "itemknn", "ease")), results
    best = json.loads((work / "best.json").read_text())
    assert best and set(best) <= set(tb.get_model("itemknn")().get_params()), best
    assert len(pd.read_csv(work / "best.trials.csv")) == 8
    assert (work / "model" / "manifest.json").is_file()

    # recommendations print ids with their titles, from the items file beside the ratings
    titles = pd.read_parquet(work / "ratings.items.parquet").set_index("item")["title"]
    recommend = _block(blocks, "tastebud recommend")
    rows = re.findall(r"│\s*(i\d+)\s*│\s*([^│]*?)\s*│", recommend.stdout)
    assert len(rows) == 10, recommend.stdout  # two lists of 5
    assert all(titles[item] == title for item, title in rows), rows
    assert "you had" in recommend.stdout and "None" not in recommend.stdout

    # the service answers JSON with items, for a known user and for a new person
    answers = [
        json.loads(line) for line in _block(blocks, "tastebud serve").stdout.splitlines() if line.startswith("{")
    ]
    assert [a["path"] for a in answers] == ["collaborative", "history"], answers
    assert answers[0]["user"] == "u1"
    assert all(len(a["items"]) == 3 and a["items"][0]["rank"] == 1 for a in answers), answers


def test_a_failing_command_fails_the_run(tmp_path):
    # the runner itself: a failing command stops its block and the page, a later line never runs
    env = _environment(tmp_path / "bin")
    page = "```bash\necho one\n```\n\n```bash\nfalse\necho two\n```\n\n```bash\necho three\n```\n"
    work = tmp_path / "work"
    work.mkdir()
    blocks = run_page(page, work, env)
    assert [b.returncode for b in blocks] == [0, 1]
    assert "two" not in blocks[1].stdout and "exit 1 from: false" in blocks[1].stderr
    # `tastebud` on PATH is this checkout's, and bad input fails the block too
    blocks = run_page("```bash\ntastebud --version\ntastebud nope\n```\n", work, env)
    assert blocks[0].returncode == 2 and "tastebud" in blocks[0].stdout, _failure(blocks[0])


def test_the_page_stays_on_loopback():
    page = PAGE.read_text()
    hosts = re.findall(r"(?:https?://)?([\w.-]+):" + PAGE_PORT, page)
    assert hosts and set(hosts) <= {"127.0.0.1", "localhost"}, hosts
    assert "--host" not in "".join(bash_blocks(page))
