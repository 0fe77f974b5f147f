"""Command line: run | check | validate | test-notify | init | demo (README, "Commands")."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bot import config as config_mod
from bot.app.check import build, unknown
from bot.common import secrets
from bot.common.logs import LOG_FORMATS, log_event, setup_logging
from bot.common.plugins import FALLBACK
from bot.common.version import package_version
from bot.config import Config, ConfigError
from bot.state.types import SchemaTooNewError, StoreError

if TYPE_CHECKING:
    from bot.app.replica import Replica
    from bot.app.service import App

logger = logging.getLogger("bot")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 3

LOG_FORMAT_ENV = "BALANCE_BOT_LOG_FORMAT"
DELIVERY_WAIT = 20.0  # check: how long to wait for its notifications to go out


def _global_options(p: argparse.ArgumentParser, defaults: bool, config: bool = True) -> None:
    """-c, --log-format and --log-level, before or after the sub-command. On the
    sub-parsers their default is SUPPRESS: else a sub-parser's default would
    overwrite a value given before the sub-command. Without `config`, no -c (the
    demo reads no config)."""

    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    if config:
        p.add_argument(
            "-c",
            "--config",
            default=default(None),
            help=f"config file (default: ${config_mod.CONFIG_ENV} or ./rules.toml)",
        )
    p.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=default(None),
        help=f"log line format (default: config, ${LOG_FORMAT_ENV}, human)",
    )
    p.add_argument(
        "--log-level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        default=default(None),
        help="least important log lines shown (default INFO; check: WARNING and its "
        "alert messages, so that cron mails only news)",
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="balance-bot",
        description="Watch AI credit balances (CometAPI, OpenRouter, DeepSeek, new-api sites); "
        "warn in Telegram and Slack.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    _global_options(p, defaults=True)
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, defaults=False)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str, summary: str, description: str, parents: Sequence[argparse.ArgumentParser]
    ) -> argparse.ArgumentParser:
        """A sub-command: `summary` in the list of commands, `description` in its --help."""
        return sub.add_parser(
            name, parents=list(parents), help=summary, description=f"{summary}. {description}"
        )

    command(
        "run",
        "the service: poll, alert, answer chat; SIGHUP reloads",
        "Runs until SIGTERM or SIGINT; /healthz and /metrics on [bot] http_listen.",
        [common],
    )
    check = command(
        "check",
        "one poll cycle, Nagios-style output and exit code",
        "Polls every account once, saves alert state, sends notifications, prints one "
        "line (or JSON) and exits 0 OK, 1 WARNING, 2 CRITICAL or 3 UNKNOWN.",
        [common],
    )
    check.add_argument("--json", action="store_true", help="print one JSON object instead")
    check.add_argument(
        "--no-notify", action="store_true", help="evaluate and save state, send nothing"
    )
    command(
        "validate",
        "check the config and the env vars it names",
        "Prints every problem by its TOML path and sends nothing; exits 0 when valid, else 3.",
        [common],
    )
    command(
        "test-notify",
        "send a test message to every destination",
        "One attempt each, now; prints one line per destination and exits 0 when all "
        "took it, else 1. State and outbox are not touched.",
        [common],
    )
    init = command(
        "init",
        "write a starter config",
        "Writes a commented config that validates once the variables it prints are set; "
        "never overwrites a file.",
        [common],
    )
    for flag, what in (
        ("--telegram", "alerts to Telegram"),
        ("--slack", "alerts to Slack"),
        ("--webhook", "alerts to a webhook"),
    ):
        init.add_argument(flag, action="store_true", help=what)
    init.add_argument(
        "--provider",
        action="append",
        default=[],
        choices=["newapi", "openrouter", "deepseek"],
        help="add an account of this provider besides CometAPI's (repeatable; docs/providers.md)",
    )
    init.add_argument(
        "-o",
        "--output",
        help="where to write it (default: -c FILE, $BALANCE_BOT_CONFIG, else ./rules.toml)",
    )
    state = command(
        "state",
        "move the state between backends",
        "`state import FILE` copies an SQLite state file (alerts, outbox, history, "
        "snoozes, acks, marks) into the empty PostgreSQL database of [bot] state_url.",
        [common],
    )
    moves = state.add_subparsers(dest="action", required=True, metavar="ACTION")
    move = moves.add_parser(
        "import",
        parents=[common],
        help="copy an SQLite state file into the state_url database",
        description="Copies FILE into the empty database of [bot] state_url; no "
        "balance-bot may be running on either. Exits 0 when copied, 1 if it could not be.",
    )
    move.add_argument("file", metavar="FILE", help="the SQLite state file (state_path of `run`)")
    no_config = argparse.ArgumentParser(add_help=False)
    _global_options(no_config, defaults=False, config=False)
    demo = command(
        "demo",
        "no credentials needed: a simulated account",
        "The real pipeline against a built-in simulated account, with its alert messages "
        "on stderr; reads no config. It runs on a compressed clock: one demo second is one "
        "hour of simulated time, so its story of a few days takes 100 seconds. Telegram "
        "and Slack join in when TELEGRAM_BOT_TOKEN and "
        "TELEGRAM_CHAT_ID, or SLACK_BOT_TOKEN and SLACK_CHANNEL, are set.",
        [no_config],
    )
    demo.add_argument(
        "--interval", default="2h", help="poll interval, in simulated time (default 2h)"
    )
    demo.add_argument(
        "--speed",
        type=float,
        default=3600.0,
        help="simulated seconds per real second (default 3600: one second is one hour; "
        "1 runs in real time)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    fmt = args.log_format or os.environ.get(LOG_FORMAT_ENV) or None
    level = args.log_level or ("WARNING" if args.command == "check" else "INFO")
    setup_logging(fmt or "human", level)
    if args.command == "check" and args.log_level is None:
        # cron mails what check writes to stderr: news only, i.e. warnings and the
        # alert messages of the log notifier (bot/notifiers/log.py), which are
        # notifications check sends; not a line about the seed on every run
        logging.getLogger("bot.alerts").setLevel(logging.INFO)
    if args.command == "demo":
        from bot.app.demo import run_demo

        return _run_async(lambda stop, _: run_demo(stop, args.interval, args.speed))
    if args.command == "init":
        from bot.app.starter import write_starter

        output = args.output or str(config_mod.resolve_path(args.config))  # where validate looks
        return write_starter(output, args.telegram, args.slack, args.webhook, args.provider)
    path = config_mod.resolve_path(args.config)
    try:
        cfg = config_mod.load(path)
    except ConfigError as exc:
        return _config_failed(args, path, exc)
    for secret in cfg.secrets():
        secrets.register(secret)
    if fmt is None and cfg.bot.log_format != "human":
        setup_logging(cfg.bot.log_format, level)
    if args.command == "validate":
        print(
            f"{path}: OK ({len(cfg.accounts)} accounts, {len(cfg.rules)} rules, "
            f"notifiers: {', '.join(cfg.notifiers) or FALLBACK})"
        )
        return EXIT_OK
    if args.command == "check":
        return asyncio.run(_check(cfg, args.json, not args.no_notify))
    if args.command == "state":
        return asyncio.run(_state_import(cfg, Path(args.file)))
    if args.command == "test-notify":
        from bot.app.testnotify import test_notify

        return asyncio.run(test_notify(cfg))
    return _run_async(lambda stop, hangup: _serve(cfg, path, stop, hangup))


def _config_failed(args: argparse.Namespace, path: Path, exc: ConfigError) -> int:
    problems = [secrets.redact(p) for p in exc.problems]
    if args.command == "check":
        # one line naming the file once: a problem with the file itself (not
        # found, not TOML) starts with its name already
        named = f"{path}: "
        told = "; ".join(p.removeprefix(named) for p in problems)
        print(unknown(f"config error in {named}{told}").output(args.json))
        return EXIT_CONFIG
    print(f"{path}: {len(problems)} problem(s):", file=sys.stderr)
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)
    return EXIT_CONFIG


Main = Callable[[asyncio.Event, asyncio.Event], Awaitable[int]]


def _run_async(main_coro: Main) -> int:
    """Run until SIGTERM/SIGINT (a second signal exits at once); SIGHUP sets the
    second event, for whoever reloads."""

    async def runner() -> int:
        loop = asyncio.get_running_loop()
        stop, hangup = asyncio.Event(), asyncio.Event()

        def on_signal(signum: int) -> None:
            if stop.is_set():
                log_event(logger, "bot.killed", logging.WARNING, signal=signal.Signals(signum).name)
                logging.shutdown()
                os._exit(128 + signum)
            log_event(logger, "bot.signal", signal=signal.Signals(signum).name)
            stop.set()

        def on_hangup() -> None:
            log_event(logger, "bot.sighup")
            hangup.set()

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal, signum)
        loop.add_signal_handler(signal.SIGHUP, on_hangup)
        return await main_coro(stop, hangup)

    try:
        return asyncio.run(runner())
    except SchemaTooNewError as exc:  # a newer balance-bot's state: a config problem
        log_event(logger, "bot.cannot_start", logging.ERROR, reason=str(exc))
        return EXIT_CONFIG
    except StoreError as exc:
        log_event(logger, "bot.cannot_start", logging.ERROR, reason=str(exc))
        return EXIT_FAILED


async def _serve(cfg: Config, path: Path, stop: asyncio.Event, hangup: asyncio.Event) -> int:
    from bot.app.service import App, StartupError

    if cfg.bot.state_url:
        return await _serve_replica(cfg, path, stop, hangup)
    try:
        async with App(cfg) as app:
            reloading = app.tasks.spawn("reloads", _reloads(app, path, hangup))
            try:
                await app.serve(stop)
            finally:
                reloading.cancel()
                await asyncio.gather(reloading, return_exceptions=True)
    except StartupError as exc:
        log_event(logger, "bot.cannot_start", logging.ERROR, reason=str(exc))
        return EXIT_FAILED
    return EXIT_FAILED if app.fatal else EXIT_OK


async def _serve_replica(
    cfg: Config, path: Path, stop: asyncio.Event, hangup: asyncio.Event
) -> int:
    """A replica on a shared database: standby, active while it holds the lock (SPEC 7b)."""
    from bot.app.replica import Replica
    from bot.app.service import StartupError
    from bot.state.backends import lease

    replica = Replica(cfg, lease(cfg.bot.state_url))
    reloading = asyncio.create_task(_reloads(replica, path, hangup), name="reloads")
    try:
        await replica.serve(stop)
    except StartupError as exc:
        log_event(logger, "bot.cannot_start", logging.ERROR, reason=str(exc))
        return EXIT_FAILED
    finally:
        reloading.cancel()
        await asyncio.gather(reloading, return_exceptions=True)
    return EXIT_FAILED if replica.fatal else EXIT_OK


async def _check(cfg: Config, as_json: bool, notify: bool) -> int:
    from bot.app.service import App
    from bot.state.backends import lease

    held = None
    try:
        if cfg.bot.state_url:  # as with the SQLite lock: not beside an active process
            held = lease(cfg.bot.state_url)
            if not await held.acquire():
                refused = unknown(
                    f"database {held.where} is in use by an active balance-bot process; "
                    "check reads the state only when none is active (stop it, or ask "
                    "its /healthz and /metrics)"
                )
                print(refused.output(as_json))
                return int(refused.status)
        async with App(cfg, lease=held) as app:
            if notify:
                await app.start_notifiers(listen=False)
                await app.release_held()
                await app.tell_missed()
            await app.jobs.seed()
            result = await app.cycle(notify)
            if not result.committed:
                where = secrets.redact(cfg.bot.state_url) or cfg.bot.state_path
                report = unknown(f"could not save state to {where}")
            else:
                monitor = app.model
                burn = {a: f.burn.total for a, f in monitor.flows.items()}
                report = build(
                    result.results,
                    monitor.rules,
                    monitor.state,
                    monitor.latest,
                    monitor.now(),
                    burn,
                    monitor.accounts,
                )
            if notify:
                await _flush(app)
    except StoreError as exc:
        report = unknown(str(exc))
    finally:
        if held is not None:
            await held.release()
    print(report.output(as_json))
    return int(report.status)


async def _flush(app: App) -> None:
    """Deliver what is due now; what fails stays in the outbox for the next run."""
    try:
        async with asyncio.timeout(DELIVERY_WAIT):
            await app.delivery.deliver_due()
    except TimeoutError:
        log_event(
            logger,
            "delivery.deferred",
            logging.WARNING,
            reason=f"notifications not delivered within {DELIVERY_WAIT:g}s stay in the outbox",
        )


async def _state_import(cfg: Config, file: Path) -> int:
    """`balance-bot state import FILE` (SPEC 7b)."""
    from bot.state.backends import lease
    from bot.state.transfer import import_sqlite

    if not cfg.bot.state_url:
        print(
            "state import: [bot] state_url is not set; name the database to copy into",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    held = lease(cfg.bot.state_url)
    try:
        if not await held.acquire():
            raise StoreError(
                f"database {held.where} is in use by an active balance-bot process; stop "
                "every replica before importing"
            )
        counts = await import_sqlite(file, cfg.bot.state_url)
    except SchemaTooNewError as exc:
        print(f"state import: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except StoreError as exc:
        print(f"state import: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        await held.release()
    copied = ", ".join(f"{n} {table}" for table, n in counts.items() if n) or "no rows"
    print(f"imported {file} into {held.where}: {copied}")
    return EXIT_OK


async def _reloads(app: App | Replica, path: Path, hangup: asyncio.Event) -> None:
    """SIGHUP: read the config again; a valid one is applied, an invalid one is
    logged problem by problem and the running one kept."""
    while True:
        await hangup.wait()
        hangup.clear()
        try:
            cfg = config_mod.load(path)
        except Exception as exc:  # whatever is wrong with the file, the service goes on
            problems = exc.problems if isinstance(exc, ConfigError) else [f"{path}: {exc!r}"]
            for problem in problems:
                log_event(logger, "config.invalid", logging.ERROR, problem=secrets.redact(problem))
            log_event(
                logger,
                "config.kept",
                logging.WARNING,
                hint=f"fix {path} and send SIGHUP again; the running config stays",
            )
            continue
        try:
            await app.reload(cfg)
        except Exception as exc:  # a reload must never stop the service
            logger.error("config.reload_failed", exc_info=exc)
