"""The `teamster` command: serve (`up`, `engine`, `worker`), run patterns, and manage what a server holds.

This module is the root: it defines the serving commands and registers the others, one module each
under `teamster.app.commands`.
"""

from __future__ import annotations

import errno
import importlib
import importlib.util
import logging
import os
import sys
from enum import StrEnum
from pathlib import Path
from types import ModuleType
from typing import Annotated

import typer
from rich.console import Console

from teamster import __version__
from teamster.app.commands import approvals, budget, policy, runs, sessions
from teamster.app.commands.run import run_command
from teamster.app.output import UserError, fail
from teamster.app.run import run, stop_signals
from teamster.engine.config import ConfigError, EngineConfig, load_config
from teamster.engine.engine import Engine
from teamster.sdk import Worker
from teamster.sdk.websocket import HandshakeError
from teamster.sdk.worker import DEFAULT_URL
from teamster.storage import StorageInUse
from teamster.storage.sqlite import DB_FILE

log = logging.getLogger("teamster")
app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # a crash report must not print config values or tokens
)
WORKER_CONNECT_WAIT_S = 10.0


class StorageKind(StrEnum):
    memory = "memory"
    sqlite = "sqlite"


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"teamster {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """An agent harness built on the worker model: one engine, many swappable workers."""


@app.command()
def engine(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Engine config file (YAML).")] = None,
    ws_port: Annotated[int | None, typer.Option(help="Worker WebSocket port (0 picks a free one).")] = None,
    http_port: Annotated[int | None, typer.Option(help="HTTP triggers port (0 picks a free one).")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Where sqlite storage keeps its file.")] = None,
    storage: Annotated[StorageKind | None, typer.Option(help="Storage backend.")] = None,
) -> None:
    """Run the engine until SIGTERM or SIGINT; flags override the config file, which overrides defaults."""
    _setup_logging()
    try:
        loaded = load_config(
            config,
            ws_port=ws_port,
            http_port=http_port,
            data_dir=data_dir,
            storage=storage.value if storage is not None else None,
        )
        run(_serve(loaded, []))
    except (UserError, ConfigError) as exc:
        fail(str(exc))


@app.command()
def up(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Config file (YAML) with a `harness:` block.")
    ] = None,
    profile: Annotated[str | None, typer.Option(help="Harness profile: thin or thick (default thick).")] = None,
    ws_port: Annotated[int | None, typer.Option(help="Worker WebSocket port (0 picks a free one).")] = None,
    http_port: Annotated[int | None, typer.Option(help="HTTP triggers port (0 picks a free one).")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Where sqlite storage and credentials are kept.")] = None,
    storage: Annotated[StorageKind | None, typer.Option(help="Storage backend.")] = None,
) -> None:
    """Run the engine and a harness profile's workers in one process until SIGTERM or SIGINT."""
    _setup_logging()
    try:
        loaded = load_config(
            config,
            ws_port=ws_port,
            http_port=http_port,
            data_dir=data_dir,
            storage=storage.value if storage is not None else None,
            profile=profile,
        )
        token = os.environ.get("TEAMSTER_TOKEN") or None
        # Imported here: the harness pulls in the provider SDKs (seconds), which `engine` and `worker` never need.
        from teamster.app.profiles import configured_workers
        from teamster.app.reserved import reserve_scopes
        from teamster.app.worker import create_worker as app_worker
        from teamster.patterns.functions import create_worker as patterns_worker

        try:
            workers = configured_workers(loaded)
        except ValueError as exc:  # a policy pack or model catalog the harness cannot use
            raise UserError(f"harness: {exc}") from None
        # The app goes last: it is closed first, while the harness its runs use is still there.
        api = app_worker(profile=loaded.harness.profile, token=token)
        api.reserve_routes(loaded)
        reserve_scopes(loaded)  # the harness's, patterns' and app's state scopes and streams
        workers += [patterns_worker(), api]
        run(_serve(loaded, workers))
    except (UserError, ConfigError) as exc:
        fail(str(exc))


@app.command()
def worker(
    module: Annotated[str, typer.Argument(help="Dotted module name or .py file defining a module-level `worker`.")],
    engine_url: Annotated[str, typer.Option(envvar="TEAMSTER_URL", help="Engine WebSocket URL.")] = DEFAULT_URL,
) -> None:
    """Run a worker module connected to an engine until SIGTERM or SIGINT."""
    _setup_logging()
    try:
        run(_serve_worker(_load_worker(module), engine_url))
    except UserError as exc:
        fail(str(exc))


app.command("run")(run_command)
app.add_typer(runs.app, name="runs")
app.add_typer(approvals.app, name="approvals")
app.add_typer(sessions.app, name="sessions")
app.add_typer(budget.app, name="budget")
app.add_typer(policy.app, name="policy")


def main() -> None:
    """Run the CLI with the commands registered on `app` (`teamster.cli` adds `bench` before calling this)."""
    app(prog_name="teamster")


async def _serve(config: EngineConfig, workers: list[Worker]) -> None:
    """The engine, with `workers` attached in-process (none for `teamster engine`), until a stop signal."""
    with stop_signals() as stopping:
        running = Engine(config)
        try:
            await running.start()
        except StorageInUse as exc:
            raise UserError(str(exc)) from None
        except OSError as exc:
            raise UserError(_listen_error(exc)) from None
        for attached in workers:
            await attached.open_local(running)
        what = f"up ({config.harness.profile} profile)" if workers else "engine"
        log.info("teamster %s ready  %s", what, "  ".join(_addresses(running)))
        if workers and "http" in running.ports:
            url = f"http://{_host(running, 'iii-http')}:{running.ports['http']}/"
            Console(stderr=True).print(
                f"teamster is up: open [bold]{url}[/bold] (playground and run API)", highlight=False
            )
        await stopping.wait()
        log.info("teamster %s stopping", "up" if workers else "engine")
        for attached in reversed(workers):
            await attached.close()
        await running.stop()


async def _serve_worker(target: Worker, engine_url: str) -> None:
    with stop_signals() as stopping:
        try:
            await target.open(engine_url, wait=WORKER_CONNECT_WAIT_S)
        except HandshakeError as exc:  # it is running, and said no: starting one is not the fix
            raise UserError(str(exc)) from None
        except ConnectionError as exc:
            raise UserError(f"{exc}; start one with `teamster engine` or pass --engine-url") from None
        log.info("worker %s connected to %s", target.name, engine_url)
        try:
            await stopping.wait()
        finally:
            await target.close()


def _load_worker(target: str) -> Worker:
    """Import `target` (a dotted name or a .py path) and return its module-level `worker`."""
    try:
        module = _import_file(Path(target)) if target.endswith(".py") or "/" in target else _import_dotted(target)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (target == exc.name or target.startswith(f"{exc.name}.")):
            raise UserError(
                f"no module named {target!r}: give a dotted name importable from {Path.cwd()} or a path to a .py file"
            ) from None
        raise UserError(f"importing {target} failed: {exc}; install it or fix the import") from None
    found = getattr(module, "worker", None)
    if not isinstance(found, Worker):
        raise UserError(
            f'{target} has no module-level `worker`: define one, e.g. `worker = Worker("my-worker")` '
            "with `from teamster.sdk import Worker`"
        )
    return found


def _import_dotted(name: str) -> ModuleType:
    # A console script's sys.path lacks the working directory that `python -m` would add.
    sys.path.insert(0, str(Path.cwd()))
    return importlib.import_module(name)


def _import_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise UserError(f"no such file {path}: give a path to a .py file or a dotted module name")
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise UserError(f"cannot import {path}: not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.resolve().parent))  # so the file can import its siblings, as `python file.py` would
    sys.modules[spec.name] = module  # dataclasses and pydantic look their module up here
    spec.loader.exec_module(module)
    return module


def _addresses(running: Engine) -> list[str]:
    config = running.config
    parts = []
    if "ws" in running.ports:
        parts.append(f"ws://{_host(running, 'iii-worker-manager')}:{running.ports['ws']}")
    if "http" in running.ports:
        parts.append(f"http://{_host(running, 'iii-http')}:{running.ports['http']}")
    if "stream" in running.ports:
        parts.append(f"stream=ws://{_host(running, 'iii-stream')}:{running.ports['stream']}")
    where = f" ({config.data_dir / DB_FILE})" if config.storage == "sqlite" else ""
    parts.append(f"storage={config.storage}{where}")
    return parts


def _host(running: Engine, module_name: str) -> str:
    module = next(m for m in running.modules if m.name == module_name)
    host = str(getattr(module.config, "host", "127.0.0.1"))
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # a wildcard bind is reachable on loopback


def _listen_error(exc: OSError) -> str:
    reason = exc.strerror or str(exc)
    if exc.errno == errno.EADDRINUSE:
        return f"{reason}: stop what holds that port or pick another with --ws-port/--http-port (0 picks a free one)"
    return f"cannot start the engine: {reason}"


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)-7s %(message)s", datefmt="%H:%M:%S")
