"""The request path of docs/architecture.md ("The request path"), checked on the source.

- Only repositories (and models) build SQL: no other module of a domain imports SQLAlchemy's
  statement builders or runs a statement on a session (`execute`, `scalar`, `scalars`, `get`,
  `stream`). Services may use the session's unit of work (`add`, `delete`, `flush`,
  `refresh`), which builds no SQL of its own.
- A router touches no session method at all and never calls the outbox.
- A write route (POST, PUT, PATCH, DELETE) goes through a service: it calls no repository.
- A GET route takes no write session.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "backend_app"
# Infrastructure, not domains: they have their own rules (docs/architecture.md, "Layout").
NOT_DOMAINS = {"core", "db", "worker"}
SQL_MODULES = ("repository.py", "models.py")
# Statement builders and the ORM's query side; `sqlalchemy.exc` (errors to catch) and
# `sqlalchemy.ext.asyncio` (the session type) are fine anywhere.
SQL_IMPORTS = ("sqlalchemy", "sqlalchemy.dialects", "sqlalchemy.sql", "sqlalchemy.orm")
RUNS_A_STATEMENT = {"execute", "scalar", "scalars", "get", "stream", "stream_scalars"}
WRITE_METHODS = {"post", "put", "patch", "delete"}

# (module, function) -> why the rule does not hold there.
GET_ROUTES_THAT_WRITE = {
    ("messages/router.py", "conversation"): "opening a conversation marks it read; clients rely on it",
}


@dataclass(frozen=True)
class Module:
    path: str  # relative to backend_app/, e.g. "jobs/router.py"
    tree: ast.Module


def domain_modules() -> list[Module]:
    modules = []
    for file in sorted(PACKAGE.glob("*/**/*.py")):
        relative = file.relative_to(PACKAGE).as_posix()
        if relative.split("/")[0] in NOT_DOMAINS:
            continue
        modules.append(Module(relative, ast.parse(file.read_text(), filename=str(file))))
    return modules


def session_names(function: ast.AST) -> set[str]:
    """Names that hold a database session inside `function`: parameters typed as one, and
    `async with ...session() as name` targets."""
    names = set()
    if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
        for argument in [*function.args.args, *function.args.kwonlyargs]:
            if argument.annotation is not None and "Session" in ast.unparse(argument.annotation):
                names.add(argument.arg)
    for node in ast.walk(function):
        if isinstance(node, ast.AsyncWith):
            for item in node.items:
                if isinstance(item.optional_vars, ast.Name) and "session" in ast.unparse(item.context_expr):
                    names.add(item.optional_vars.id)
    return names


def session_calls(module: Module, methods: set[str] | None) -> list[str]:
    """`name.method(...)` calls on a session (any method when `methods` is None)."""
    found = []
    for function in ast.walk(module.tree):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        sessions = session_names(function)
        for node in ast.walk(function):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id in sessions
                and (methods is None or node.func.attr in methods)
            ):
                found.append(f"{module.path}:{node.lineno} {ast.unparse(node.func)}()")
    return sorted(set(found))


def sql_imports(module: Module) -> list[str]:
    found = []
    for node in ast.walk(module.tree):
        if isinstance(node, ast.ImportFrom) and node.module is not None:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found += [
            f"{module.path}:{node.lineno} imports {name}"
            for name in names
            if name in SQL_IMPORTS or name.startswith(tuple(f"{prefix}." for prefix in SQL_IMPORTS[1:]))
        ]
    return found


def imported_names(module: Module, suffix: str) -> set[str]:
    """Local names bound to a module whose dotted path ends with `suffix` (or to its functions)."""
    names = set()
    for node in ast.walk(module.tree):
        if not isinstance(node, ast.ImportFrom) or node.module is None:
            continue
        for alias in node.names:
            if f"{node.module}.{alias.name}".endswith(suffix) or node.module.endswith(suffix):
                names.add(alias.asname or alias.name)
    return names


def routes(module: Module) -> list[tuple[str, ast.AsyncFunctionDef | ast.FunctionDef]]:
    """(HTTP method, function) for each `@router.<method>(...)` route."""
    found = []
    for node in module.tree.body:
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for decorator in node.decorator_list:
            if (
                isinstance(decorator, ast.Call)
                and isinstance(decorator.func, ast.Attribute)
                and isinstance(decorator.func.value, ast.Name)
                and decorator.func.value.id == "router"
            ):
                found.append((decorator.func.attr, node))
    return found


def calls_to(function: ast.AST, names: set[str]) -> list[str]:
    found = []
    for node in ast.walk(function):
        if isinstance(node, ast.Call):
            target = node.func.value if isinstance(node.func, ast.Attribute) else node.func
            if isinstance(target, ast.Name) and target.id in names:
                found.append(f"{ast.unparse(node.func)}() line {node.lineno}")
    return found


MODULES = domain_modules()
ROUTERS = [module for module in MODULES if module.path.endswith("/router.py")]


def test_the_checks_see_the_package() -> None:
    assert len(ROUTERS) >= 10
    assert any(module.path == "emails/service.py" for module in MODULES)


def test_only_repositories_build_sql() -> None:
    outside = [module for module in MODULES if not module.path.endswith(SQL_MODULES)]

    found = [line for module in outside for line in sql_imports(module) + session_calls(module, RUNS_A_STATEMENT)]

    assert found == [], "SQL outside a repository:\n" + "\n".join(found)


def test_routers_touch_no_session_and_no_outbox() -> None:
    found = [line for module in ROUTERS for line in session_calls(module, None)]
    found += [
        f"{module.path} imports the outbox" for module in ROUTERS if imported_names(module, "outbox.service") != set()
    ]

    assert found == [], "\n".join(found)


@pytest.mark.parametrize("module", ROUTERS, ids=lambda module: module.path)
def test_write_routes_go_through_a_service(module: Module) -> None:
    repositories = imported_names(module, "repository")

    found = [
        f"{module.path} {function.name}: {call}"
        for method, function in routes(module)
        if method in WRITE_METHODS
        for call in calls_to(function, repositories)
    ]

    assert found == [], "a write route calls a repository:\n" + "\n".join(found)


@pytest.mark.parametrize("module", ROUTERS, ids=lambda module: module.path)
def test_get_routes_take_no_write_session(module: Module) -> None:
    found = [
        f"{module.path} {function.name}"
        for method, function in routes(module)
        if method == "get" and (module.path, function.name) not in GET_ROUTES_THAT_WRITE
        for argument in [*function.args.args, *function.args.kwonlyargs]
        if argument.annotation is not None and "WriteSession" in ast.unparse(argument.annotation)
    ]

    assert found == [], "a GET route takes a write session:\n" + "\n".join(found)


def test_the_allowed_exceptions_still_exist() -> None:
    """An exception whose route is gone (or no longer writes) is taken off the list."""
    by_path = {module.path: module for module in ROUTERS}
    for path, function_name in GET_ROUTES_THAT_WRITE:
        functions = {function.name: method for method, function in routes(by_path[path])}
        assert functions.get(function_name) == "get", (path, function_name)


def test_a_route_that_writes_reads_only_through_its_write_session() -> None:
    # One connection per request: the caller's account and the objects in the path are read in
    # the route's own primary transaction (`CurrentUserOnPrimary`, `FollowableUser`, ...), not
    # on a replica session opened beside it (two checkouts, two transactions; issue 15).
    from fastapi import FastAPI
    from fastapi.routing import APIRoute

    from backend_app.core.openapi import dependency_calls
    from backend_app.db.dependencies import get_db_read, get_db_write
    from backend_app.main import create_app

    def api_routes(routes: list[Any]) -> Iterator[APIRoute]:
        for route in routes:
            if isinstance(route, APIRoute):
                yield route
            included = getattr(route, "original_router", None)  # FastAPI's included routers
            if included is not None:
                yield from api_routes(included.routes)

    app = create_app()
    assert isinstance(app, FastAPI)
    routes = list(api_routes(app.routes))
    writing = [route for route in routes if get_db_write in dependency_calls(route.dependant)]
    assert len(writing) > 30
    both = sorted(
        f"{'/'.join(sorted(route.methods))} {route.path}"
        for route in writing
        if get_db_read in dependency_calls(route.dependant)
    )
    assert both == []
