"""The image carries the application only: `devtools/`, `tests/` and `bench/` stay out of it
(the root .dockerignore), and nothing the image carries imports them."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

from tests.processes import API_DIR, REPO_DIR

# Folders of api/ that are not the application and must not reach the image.
LEFT_OUT = ("devtools", "tests", "bench")


def dockerignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    """(is an exception, pattern) per line of the root .dockerignore, in order."""
    patterns = []
    for raw in (REPO_DIR / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        glob = line.removeprefix("!").strip().strip("/")
        regex = ""
        for part in re.split(r"(\*\*/?|\*|\?)", glob):
            if part.startswith("**"):
                regex += "(?:.*/)?" if part.endswith("/") else ".*"
            elif part == "*":
                regex += "[^/]*"
            elif part == "?":
                regex += "[^/]"
            else:
                regex += re.escape(part)
        patterns.append((negated, re.compile(regex)))
    return patterns


def left_out_of_context(path: str) -> bool:
    """Docker's rule: the last pattern matching the path, or a folder above it, decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for negated, pattern in dockerignore_patterns():
        if any(pattern.fullmatch(prefix) for prefix in prefixes):
            excluded = not negated
    return excluded


def imported_modules(source: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(source.read_text(), filename=str(source))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
        # importlib.import_module("devtools.x"), `python -m devtools.x` and the like; a bare
        # word ("tests") is too common a string to count as a module.
        elif (
            isinstance(node, ast.Constant) and isinstance(node.value, str) and re.fullmatch(r"\w+(\.\w+)+", node.value)
        ):
            modules.add(node.value)
    return modules


def test_the_image_is_built_from_the_repository_root_with_the_root_dockerignore() -> None:
    compose = yaml.safe_load((REPO_DIR / "docker-compose.yml").read_text())
    builds = [service["build"] for service in compose["services"].values() if "build" in service]
    assert builds
    assert all(build == {"context": ".", "dockerfile": "api/Dockerfile"} for build in builds)
    assert "COPY api/ /app/api/" in (API_DIR / "Dockerfile").read_text()
    # A Dockerfile-specific ignore file would replace the root one for this image.
    assert not (API_DIR / "Dockerfile.dockerignore").exists()


def test_devtools_tests_and_bench_are_left_out_of_the_image() -> None:
    for folder in LEFT_OUT:
        assert (API_DIR / folder).is_dir()
        assert left_out_of_context(f"api/{folder}"), folder
        sample = next(path for path in sorted((API_DIR / folder).rglob("*.py")) if "__pycache__" not in path.parts)
        assert left_out_of_context(sample.relative_to(REPO_DIR).as_posix()), sample

    for needed in ("api/backend_app/main.py", "api/alembic.ini", "api/migrations/env.py", "requirements.txt"):
        assert not left_out_of_context(needed), needed


def test_backend_app_never_imports_devtools() -> None:
    offenders = {
        source.relative_to(API_DIR).as_posix(): sorted(
            module for module in imported_modules(source) if module.split(".")[0] == "devtools"
        )
        for source in (API_DIR / "backend_app").rglob("*.py")
    }
    assert len(offenders) > 50  # the whole package was read
    assert {path: modules for path, modules in offenders.items() if modules} == {}


def test_nothing_the_image_carries_imports_what_is_left_out() -> None:
    carried = [
        source
        for source in API_DIR.rglob("*.py")
        if not left_out_of_context(source.relative_to(REPO_DIR).as_posix()) and "__pycache__" not in source.parts
    ]
    offenders = {
        source.relative_to(API_DIR).as_posix(): sorted(
            module for module in imported_modules(source) if module.split(".")[0] in LEFT_OUT
        )
        for source in carried
    }
    assert API_DIR / "migrations" / "env.py" in carried
    assert {path: modules for path, modules in offenders.items() if modules} == {}
