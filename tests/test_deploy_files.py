"""The production files: no Docker engine runs here, so check what can be checked.

The compose file parses and has its services; every ``manage.py`` command it or the
Dockerfile runs exists and accepts its arguments; gunicorn's arguments parse and its app
module exists; the healthcheck URL answers; ``.env.example`` documents exactly the
variables that settings read.
"""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path
from unittest import mock

import pytest
import yaml
from django.core.management import get_commands, load_command_class
from django.db import DatabaseError
from django.test import Client, override_settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERIGNORE = ROOT / ".dockerignore"
# Variables docker compose itself uses; Django never reads them.
COMPOSE_ONLY = {
    "POSTGRES_DB",
    "POSTGRES_USER",
    "POSTGRES_PASSWORD",
    "WEB_CONCURRENCY",
    "BATON_PORT",
}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _expand_defaults(text: str) -> str:
    # "$${X:-2}" is a variable for the container's shell; use its default.
    return re.sub(r"\$\$\{\w+:-([^}]*)\}", r"\1", text)


def _command_lines(command: str | list[str]) -> list[list[str]]:
    """Split a compose/Dockerfile command into simple commands (argv lists)."""
    if isinstance(command, list):
        if command[:2] == ["sh", "-c"]:
            return _command_lines(command[2])
        return [command]
    lexer = shlex.shlex(_expand_defaults(command), posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    lexer.commenters = ""
    argvs, argv = [], []
    for token in [*lexer, ";"]:
        if token in (";", "&&", "||", "&", "|"):
            while argv and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", argv[0]):
                argv = argv[1:]  # a VAR=value prefix
            if argv:
                argvs.append(argv)
            argv = []
        else:
            argv.append(token)
    return argvs


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = "\n".join(lines).replace("\\\n", " ")
    instructions = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            instructions.append((word.upper(), rest.strip()))
    return instructions


def _dockerfile_commands() -> list[list[str]]:
    argvs = []
    for word, rest in _dockerfile_instructions():
        if word == "RUN":
            argvs += _command_lines(rest)
        elif word == "CMD":
            argvs.append(ast.literal_eval(rest))
    return argvs


def _compose_commands(compose: dict) -> list[list[str]]:
    argvs = []
    for service in compose["services"].values():
        if "command" in service:
            argvs += _command_lines(service["command"])
    return argvs


def _manage_py_calls(argvs: list[list[str]]) -> list[list[str]]:
    return [argv[2:] for argv in argvs if argv[:2] == ["python", "manage.py"]]


def _gunicorn_calls(argvs: list[list[str]]) -> list[list[str]]:
    calls = []
    for argv in argvs:
        if argv[0] == "exec":
            argv = argv[1:]
        if argv and argv[0] == "gunicorn":
            calls.append(argv[1:])
    return calls


def test_compose_has_postgres_web_and_worker(compose):
    services = compose["services"]
    assert set(services) >= {"db", "web", "worker"}
    db = services["db"]
    assert db["image"] == "postgres:17"
    volume = db["volumes"][0].split(":")[0]
    assert volume in compose["volumes"]  # a named volume, not a bind mount
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    for name in ("web", "worker"):
        assert services[name]["env_file"] == ".env"
        assert services[name]["depends_on"]["db"]["condition"] == "service_healthy"
    assert "healthcheck" in services["web"]


def test_web_migrates_then_serves_config_wsgi_on_8000(compose):
    argvs = _command_lines(compose["services"]["web"]["command"])
    assert argvs[0][:3] == ["python", "manage.py", "migrate"]
    gunicorn = _gunicorn_calls(argvs)
    assert gunicorn and gunicorn[0][0] == "config.wsgi"
    assert "0.0.0.0:8000" in gunicorn[0]
    assert compose["services"]["web"]["ports"][0].endswith(":8000")


def test_worker_runs_db_worker(compose):
    argvs = _command_lines(compose["services"]["worker"]["command"])
    assert _manage_py_calls(argvs)[0][0] == "db_worker"


# db_worker validates --backend against the configured backends; tests use the immediate one.
@override_settings(TASKS={"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}})
def test_every_manage_py_command_named_exists_and_accepts_its_arguments(compose):
    calls = _manage_py_calls(_compose_commands(compose) + _dockerfile_commands())
    names = {call[0] for call in calls}
    assert {"migrate", "db_worker", "collectstatic"} <= names
    commands = get_commands()
    for name, *args in calls:
        assert name in commands, f"manage.py {name} is not a management command"
        parser = load_command_class(commands[name], name).create_parser("manage.py", name)
        parser.parse_args(args)  # exits (SystemExit) on an unknown option


def test_gunicorn_arguments_parse_and_the_wsgi_module_exists(compose):
    from gunicorn.config import Config

    calls = _gunicorn_calls(_compose_commands(compose) + _dockerfile_commands())
    assert len(calls) == 2  # compose's web service and the image's CMD
    for args in calls:
        parsed = Config().parser().parse_args(args)
        module = parsed.args[0]
        assert (ROOT / (module.replace(".", "/") + ".py")).is_file()
    import config.wsgi

    assert callable(config.wsgi.application)


def test_dockerfile_builds_a_slim_non_root_image_with_static_files():
    instructions = _dockerfile_instructions()
    words = [word for word, _ in instructions]
    assert instructions[0] == ("FROM", "python:3.12-slim")
    users = [rest for word, rest in instructions if word == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert words.index("USER") > max(i for i, w in enumerate(words) if w == "RUN")
    runs = " ".join(rest for word, rest in instructions if word == "RUN")
    assert "pip install" in runs and "collectstatic" in runs
    assert ("EXPOSE", "8000") in instructions


def test_dockerignore_keeps_secrets_and_local_state_out():
    ignored = DOCKERIGNORE.read_text().split()
    assert {".env", ".venv", ".git", "db.sqlite3"} <= set(ignored)


def _settings_env_vars() -> set[str]:
    """Names of the environment variables config/settings.py reads (from its syntax tree)."""
    tree = ast.parse((ROOT / "config" / "settings.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            first = node.args[0]
            reads_env = (
                name.startswith("env_")
                or name == "getenv"
                or (name == "get" and ast.unparse(func).endswith("environ.get"))
            )
            if reads_env and isinstance(first, ast.Constant) and isinstance(first.value, str):
                found.add(first.value)
        elif (
            isinstance(node, ast.Subscript)
            and ast.unparse(node.value) == "os.environ"
            and isinstance(node.slice, ast.Constant)
        ):
            found.add(node.slice.value)
    return found


def _documented_env_vars() -> set[str]:
    # Active and commented-out assignments both document a variable.
    return set(re.findall(r"^#?\s?([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), flags=re.M))


def test_settings_env_reader_finds_the_known_variables():
    assert {"DEBUG", "SECRET_KEY", "DATABASE_URL", "TASKS_BACKEND", "SECURE_SSL_REDIRECT"} <= (
        _settings_env_vars()
    )


def test_env_example_documents_every_variable_settings_read():
    missing = _settings_env_vars() - _documented_env_vars()
    assert not missing, f"add to .env.example: {sorted(missing)}"


def test_env_example_documents_only_variables_something_reads():
    unknown = _documented_env_vars() - _settings_env_vars() - COMPOSE_ONLY
    assert not unknown, f"nothing reads {sorted(unknown)}"


def test_compose_interpolates_only_documented_variables():
    used = set(re.findall(r"(?<!\$)\$\{(\w+)", COMPOSE.read_text()))
    assert used - _documented_env_vars() == set()


@pytest.mark.django_db
def test_healthz_answers_ok():
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.content == b"ok"


@pytest.mark.django_db
def test_healthz_answers_the_container_healthcheck_under_production_settings(compose):
    url = compose["services"]["web"]["healthcheck"]["test"][-1]
    path = re.search(r"http://127\.0\.0\.1:8000(/\S*?)'", url).group(1)
    production = {"ALLOWED_HOSTS": ["baton.example.com"], "SECURE_SSL_REDIRECT": True}
    with override_settings(**production):
        client = Client(HTTP_HOST="127.0.0.1:8000")
        assert client.get(path).status_code == 200
        # Any other page from that host is refused: only the healthcheck skips the checks.
        assert client.get("/accounts/login/").status_code in (301, 400)


@pytest.mark.django_db
def test_healthz_reports_an_unreachable_database():
    with mock.patch("config.views.connection") as connection:
        connection.cursor.side_effect = DatabaseError("connection refused")
        response = Client().get("/healthz")
    assert response.status_code == 503


def test_gunicorn_conf_sets_known_settings_and_a_keep_alive_longer_than_a_pause():
    """gunicorn.conf.py is read from /app (the image's working directory) by both commands."""
    import runpy

    from gunicorn.config import Config

    assert ("WORKDIR", "/app") in _dockerfile_instructions()
    values = {
        name: value
        for name, value in runpy.run_path(str(ROOT / "gunicorn.conf.py")).items()
        if not name.startswith("_") and name not in {"os", "annotations"}
    }
    config = Config()
    for name, value in values.items():
        assert name in config.settings, f"gunicorn.conf.py: {name} is not a gunicorn setting"
        config.set(name, value)  # validates the value's type
    # A 2 s keep-alive reset annotators' connections after a short reading pause.
    assert config.keepalive >= 60
    assert config.worker_class_str == "gthread" and config.threads > 1
