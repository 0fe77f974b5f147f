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
from bot.config import Config, ConfigError
from bot.ops.metrics import package_version
from bot.state.types import StoreError

if TYPE_CHECKING:
    from bot.app.service import App

logger = logging.getLogger("bot")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 3

LOG_FORMAT_ENV = "BALANCE_BOT_LOG_FORMAT"
DELIVERY_WAIT = 20.0  # check: how long to wait for its notifications to go out


def _global_options(p: argparse.ArgumentParser, defaults: bool) -> None:
    """-c, --log-format and --log-level, before or after the sub-command. On the
    sub-parsers their default is SUPPRESS: else a sub-parser's default would
    overwrite a value given before the sub-command."""

    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

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
        default=default("INFO"),
        help="least important log lines shown (default INFO)",
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="balance-bot", description="Watch CometAPI balances; warn in Telegram and Slack."
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    _global_options(p, defaults=True)
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, defaults=False)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser(
        "run", parents=[common], help="the service: poll, alert, answer chat; SIGHUP reloads"
    )
    check = sub.add_parser(
        "check", parents=[common], help="one poll cycle, Nagios-style output and exit code"
    )
    check.add_argument("--json", action="store_true", help="print one JSON object instead")
    check.add_argument(
        "--no-notify", action="store_true", help="evaluate and save state, send nothing"
    )
    sub.add_parser("validate", parents=[common], help="check the config and the env vars it names")
    sub.add_parser("test-notify", parents=[common], help="send a test message to every destination")
    init = sub.add_parser("init", parents=[common], help="write a starter config")
    for flag, what in (
        ("--telegram", "alerts to Telegram"),
        ("--slack", "alerts to Slack"),
        ("--webhook", "alerts to a webhook"),
    ):
        init.add_argument(flag, action="store_true", help=what)
    init.add_argument(
        "-o",
        "--output",
        help="where to write it (default: -c FILE, $BALANCE_BOT_CONFIG, else ./rules.toml)",
    )
    demo = sub.add_parser(
        "demo", parents=[common], help="no credentials needed: a simulated account"
    )
    demo.add_argument("--interval", default="2s", help="poll interval (default 2s)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    fmt = args.log_format or os.environ.get(LOG_FORMAT_ENV) or None
    setup_logging(fmt or "human", args.log_level)
    if args.command == "demo":
        from bot.app.demo import run_demo

        return _run_async(lambda stop, _: run_demo(stop, args.interval))
    if args.command == "init":
        from bot.app.starter import write_starter

        output = args.output or str(config_mod.resolve_path(args.config))  # where validate looks
        return write_starter(output, args.telegram, args.slack, args.webhook)
    path = config_mod.resolve_path(args.config)
    try:
        cfg = config_mod.load(path)
    except ConfigError as exc:
        return _config_failed(args, path, exc)
    for secret in cfg.secrets():
        secrets.register(secret)
    if fmt is None and cfg.bot.log_format != "human":
        setup_logging(cfg.bot.log_format, args.log_level)
    if args.command == "validate":
        print(
            f"{path}: OK ({len(cfg.accounts)} accounts, {len(cfg.rules)} rules, "
            f"notifiers: {', '.join(cfg.notifiers) or FALLBACK})"
        )
        return EXIT_OK
    if args.command == "check":
        return asyncio.run(_check(cfg, args.json, not args.no_notify))
    if args.command == "test-notify":
        from bot.app.testnotify import test_notify

        return asyncio.run(test_notify(cfg))
    return _run_async(lambda stop, hangup: _serve(cfg, path, stop, hangup))


def _config_failed(args: argparse.Namespace, path: Path, exc: ConfigError) -> int:
    if args.command == "check":
        report = unknown(f"config error in {path}: " + "; ".join(exc.problems))
        print(report.output(args.json))
        return EXIT_CONFIG
    print(f"{path}: {len(exc.problems)} problem(s):", file=sys.stderr)
    for problem in exc.problems:
        print(f"  {secrets.redact(problem)}", file=sys.stderr)
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
    except StoreError as exc:
        log_event(logger, "bot.cannot_start", logging.ERROR, reason=str(exc))
        return EXIT_FAILED


async def _serve(cfg: Config, path: Path, stop: asyncio.Event, hangup: asyncio.Event) -> int:
    from bot.app.service import App, StartupError

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


async def _check(cfg: Config, as_json: bool, notify: bool) -> int:
    from bot.app.service import App

    try:
        async with App(cfg) as app:
            if notify:
                await app.start_notifiers(listen=False)
                await app.release_held()
                await app.tell_missed()
            await app.jobs.seed()
            result = await app.cycle(notify)
            if not result.committed:
                report = unknown(f"could not save state to {cfg.bot.state_path}")
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
                )
            if notify:
                await _flush(app)
    except StoreError as exc:
        report = unknown(str(exc))
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


async def _reloads(app: App, path: Path, hangup: asyncio.Event) -> None:
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
