"""Operator commands in the docs are the ones that run: the Procfile's own lines."""

from __future__ import annotations

import re

from tests.processes import REPO_DIR, procfile_commands


def section(document: str, heading: str) -> str:
    text = (REPO_DIR / document).read_text()
    start = text.index(f"\n{heading}\n")
    following = re.search(r"\n## ", text[start + 1 :])
    return text[start : start + 1 + following.start()] if following else text[start:]


def bash_blocks(text: str) -> list[list[str]]:
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL)
    return [[line.split("  #")[0].strip() for line in block.splitlines() if line.strip()] for block in blocks]


def procfile_programs() -> dict[str, str]:
    """The Procfile's commands as typed from api/: without their `cd api && exec `."""
    return {name: command.removeprefix("cd api && exec ") for name, command in procfile_commands().items()}


def test_run_it_lists_the_procfile_worker_lines_as_they_are() -> None:
    first, others = bash_blocks(section("BACKGROUND_JOBS_SETUP.md", "## Run it"))[:2]
    programs = procfile_programs()

    assert first[:3] == [
        "source .venv/bin/activate",
        'eval "$(PYTHONPATH=api python -m devtools.devstack env)"',
        "cd api",
    ]
    assert first[3] == f"{programs['celery']} -n second@%h"
    assert sorted(others) == sorted(programs[name] for name in ("relay", "celery", "beat", "rq", "rq-video"))


def test_the_worker_classes_section_runs_every_rq_worker_with_a_scheduler() -> None:
    (commands,) = bash_blocks(section("BACKGROUND_JOBS_SETUP.md", "## Run it").split("### Faster RQ workers")[1])
    joined = " ".join(commands).replace("\\ ", "")
    single_workers = joined.split("rq worker ")[1:]
    assert len(single_workers) == 3
    assert all("--with-scheduler" in command for command in single_workers)
