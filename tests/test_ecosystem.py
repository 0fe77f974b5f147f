"""From install to a first real alert (SPEC 3, 4, 6, 7): `init`, `test-notify`,
global options anywhere, a state file that follows its config, alerts-only
Slack, the wording of late and resolved messages, and library trouble in one
log line. Real processes where a user would type the command."""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import timedelta
from zoneinfo import ZoneInfo

from aiohttp import web

from bot.app.service import App
from bot.app.starter import EXAMPLE
from bot.common.logs import OneLineFilter
from bot.engine.model import Event, EventKind, Severity
from bot.notifiers.message import plain
from bot.notify.render import AsOf, events_message
from fakes.cometapi import reply_balance
from fakes.slack import api_error
from fakes.telegram import bad_request, migrated, retry_after, server_error
from fakes.webhook import FakeWebhook, reply_status
from tests.conftest import ALERTS, BOT_TOKEN, QUERY_KEY, RULES, TG_TOKEN
from tests.helpers import FAST, T0, Clock
from tests.process import ROOT, BotProcess, run_bot

CHAT, OTHER = 111111, -100222222


def env(**extra: str) -> dict[str, str]:
    """The variables of a user's shell: none of ours unless given."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("BALANCE_BOT", "TELEGRAM"))}
    return {**clean, **extra}


# --- init: the README's steps, literally --------------------------------------------


async def test_readme_steps_init_validate_check_with_only_the_query_key(tmp_path, comet):
    """`balance-bot init`, export what it prints, `validate`, `test-notify`, `run`
    (the README's steps), and a `check`: no file edited."""
    comet.default = reply_balance(50)
    shell = env(COMETAPI_QUERY_KEY=QUERY_KEY, COMETAPI_URL=comet.url)
    init = await run_bot("init", env=shell, cwd=tmp_path)
    assert init.proc.returncode == 0, init.stderr
    out = init.stdout.splitlines()
    assert out[0] == "wrote rules.toml"
    assert [line.split("=")[0] for line in out[1:]] == ["export COMETAPI_QUERY_KEY"]
    validate = await run_bot("validate", env=shell, cwd=tmp_path)
    assert validate.proc.returncode == 0, validate.stderr
    assert "rules.toml: OK (1 accounts, 4 rules, notifiers: log)" in validate.stdout
    tried = await run_bot("test-notify", env=shell, cwd=tmp_path)
    assert tried.proc.returncode == 0 and tried.stdout.splitlines() == ["log: ok"]
    port = {"BALANCE_BOT_HTTP_LISTEN": "127.0.0.1:0"}  # the starter's 9464 may be taken here
    service = await BotProcess("run", env={**shell, **port}, cwd=tmp_path).start()
    await service.wait_for(lambda lines: any("bot.started" in x for x in lines))
    await comet.wait_requests(1)  # the first poll, at once
    assert await service.stop() == 0
    check = await run_bot("check", env=shell, cwd=tmp_path)
    assert check.proc.returncode == 0, check.stderr
    assert check.stdout.startswith("BALANCE OK - ")
    assert (tmp_path / "balance-bot.db").exists()  # next to the config


async def test_init_with_chats_names_every_variable_and_never_overwrites(tmp_path):
    init = await run_bot(
        "init", "--telegram", "--slack", "--webhook", "-o", "chat.toml", cwd=tmp_path
    )
    assert init.proc.returncode == 0
    names = [line.split("=")[0].removeprefix("export ") for line in init.stdout.splitlines()[1:]]
    assert names == [
        "COMETAPI_QUERY_KEY",
        "TELEGRAM_BOT_TOKEN",
        "TELEGRAM_CHAT_ID",
        "SLACK_BOT_TOKEN",
        "SLACK_CHANNEL",
        "SLACK_APP_TOKEN",
        "WEBHOOK_URL",
        "WEBHOOK_SECRET",
    ]
    shell = env(
        COMETAPI_QUERY_KEY=QUERY_KEY,
        TELEGRAM_BOT_TOKEN=TG_TOKEN,
        TELEGRAM_CHAT_ID=str(CHAT),
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_CHANNEL=ALERTS,
        WEBHOOK_URL="https://hooks.example.com/balance",
    )  # the optional ones unset
    validate = await run_bot("validate", "-c", "chat.toml", env=shell, cwd=tmp_path)
    assert validate.proc.returncode == 0, validate.stderr
    assert "notifiers: telegram, slack, webhook" in validate.stdout
    before = (tmp_path / "chat.toml").read_bytes()
    again = await run_bot("init", "-o", "chat.toml", cwd=tmp_path)
    assert again.proc.returncode == 1
    assert (
        again.stderr.strip()
        == "chat.toml exists; left untouched (choose another file with -o FILE)"
    )
    assert (tmp_path / "chat.toml").read_bytes() == before


def test_the_reference_config_ships_inside_the_package():
    assert EXAMPLE.read_text() == (ROOT / "rules.example.toml").read_text()


# --- global options, and a state file that follows its config ------------------------


async def test_options_before_or_after_the_command(tmp_path, write_config):
    path = write_config()
    shell = env(TEST_QUERY_KEY=QUERY_KEY)
    for args in (
        ("-c", path, "validate"),
        ("validate", "-c", path),
        ("--log-level", "DEBUG", "-c", path, "validate"),
        ("-c", "nowhere.toml", "validate", "-c", path),  # after wins
    ):
        done = await run_bot(*args, env=shell, cwd=tmp_path)
        assert done.proc.returncode == 0, (args, done.stderr)
        assert "OK" in done.stdout


async def test_a_relative_state_path_is_next_to_the_config_wherever_check_runs(tmp_path, comet):
    comet.default = reply_balance(10)
    folder = tmp_path / "etc"
    folder.mkdir()
    (folder / "rules.toml").write_text(f"""
[bot]
state_path = "state/bot.db"
http_listen = ""
[[accounts]]
name = "main"
key = "{QUERY_KEY}"
url = "{comet.url}"
[[rules]]
name = "low"
target = "total"
below = 20
""")
    (folder / "state").mkdir()
    elsewhere = tmp_path / "cron"
    elsewhere.mkdir()
    first = await run_bot("check", "-c", str(folder / "rules.toml"), cwd=elsewhere)
    assert first.proc.returncode == 1 and "BALANCE WARNING" in first.stdout
    assert "notify" in first.stderr  # the fire was announced (log notifier)
    again = await run_bot("check", "-c", "etc/rules.toml", cwd=tmp_path)
    assert again.proc.returncode == 1
    assert "notify" not in again.stderr  # the same state: nothing new to say
    assert (folder / "state" / "bot.db").exists() and not list(elsewhere.iterdir())
    moved = tmp_path / "moved.db"
    override = await run_bot(
        "check", "--no-notify", "-c", str(folder / "rules.toml"),
        env=env(BALANCE_BOT_STATE_PATH=str(moved)), cwd=elsewhere,
    )  # fmt: skip
    assert override.proc.returncode == 1 and moved.exists()


# --- test-notify -------------------------------------------------------------------------


def telegram_section(fake, chats=(CHAT, OTHER)) -> str:
    return f"""
[notifiers.telegram]
token = "{TG_TOKEN}"
chat_ids = [{", ".join(map(str, chats))}]
api_url = "{fake.url}"
"""


async def test_test_notify_reports_each_destination_and_exits_1_on_a_refusal(
    tmp_path, write_config, tg
):
    tg.fail_always("sendMessage", bad_request("Bad Request: chat not found"), chat_id=OTHER)
    path = write_config(extra=telegram_section(tg))
    done = await run_bot("test-notify", "-c", path, env=env(TEST_QUERY_KEY=QUERY_KEY))
    assert done.proc.returncode == 1, done.stderr
    assert done.stdout.splitlines() == [
        f"telegram {CHAT}: ok",
        f"telegram {OTHER}: failed: Chat not found — check chat_ids (/id in the chat shows "
        "its id) and add the bot to that chat",
    ]
    (sent,) = tg.sent
    assert sent.chat_id == CHAT and "balance-bot test message" in sent.text
    assert not (tmp_path / "state.db").exists()  # neither state nor outbox


def failure(line: str, where: str) -> tuple[str, str]:
    """A failed line of test-notify as (reason, remedy), checking its form (SPEC 3):
    `<notifier> <label>: failed: <reason> — <remedy>`, the label said once."""
    head, _, rest = line.partition(": failed: ")
    assert head == where, line
    assert rest.count(" — ") == 1, line
    reason, remedy = rest.split(" — ")
    assert reason and remedy and remedy not in reason and reason not in remedy, line
    assert where.split(" ", 1)[1] not in rest, line  # the label is not repeated
    return reason, remedy


async def test_test_notify_a_telegram_start_failure_names_reason_and_remedy_once(write_config, tg):
    tg.token = "999:another-token"  # the configured one is refused: 401
    path = write_config(extra=telegram_section(tg))
    done = await run_bot("test-notify", "-c", path, env=env(TEST_QUERY_KEY=QUERY_KEY))
    assert done.proc.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2
    for line, chat in zip(lines, (CHAT, OTHER), strict=True):
        assert failure(line, f"telegram {chat}") == (
            "Telegram rejected the bot token",
            "check notifiers.telegram.token and api_url",
        )


async def test_test_notify_an_unreachable_telegram_at_start(write_config, tg):
    await tg.stop()  # nothing answers at its address any more
    path = write_config(extra=telegram_section(tg, chats=(CHAT,)))
    done = await run_bot("test-notify", "-c", path, env=env(TEST_QUERY_KEY=QUERY_KEY))
    assert done.proc.returncode == 1, done.stderr
    (line,) = done.stdout.splitlines()
    reason, remedy = failure(line, f"telegram {CHAT}")
    assert not reason.startswith("Telegram")
    assert remedy == "check the network and [notifiers.telegram]"


async def test_test_notify_telegram_send_failures_say_the_chat_once(write_config, tg):
    tg.fail_always("sendMessage", migrated(-1009999), chat_id=OTHER)
    path = write_config(extra=telegram_section(tg))
    done = await run_bot("test-notify", "-c", path, env=env(TEST_QUERY_KEY=QUERY_KEY))
    assert done.proc.returncode == 1, done.stderr
    ok, failed = done.stdout.splitlines()
    assert ok == f"telegram {CHAT}: ok"
    assert failure(failed, f"telegram {OTHER}") == (
        "is now a supergroup with id -1009999",
        "put that id in notifiers.telegram.chat_ids",
    )


def slack_section(fake, token: str = BOT_TOKEN) -> str:
    return f"""
[notifiers.slack]
bot_token = "{token}"
channel = "{ALERTS}"
app_token = ""
api_url = "{fake.url}"
"""


async def test_test_notify_slack_start_and_send_failures(write_config, slack):
    path = write_config(extra=slack_section(slack, token="xoxb-not-the-one"))
    done = await run_bot("test-notify", "-c", path, env=env(TEST_QUERY_KEY=QUERY_KEY))
    assert done.proc.returncode == 1, done.stderr
    (line,) = done.stdout.splitlines()
    assert failure(line, f"slack {ALERTS}") == (
        "Slack rejected the bot token (invalid_auth)",
        "check notifiers.slack.bot_token (the Bot User OAuth Token, xoxb-) and that the app "
        "is installed",
    )
    slack.fail("chat.postMessage", api_error("channel_not_found"))
    path = write_config(extra=slack_section(slack))
    done = await run_bot("test-notify", "-c", path, env=env(TEST_QUERY_KEY=QUERY_KEY))
    assert done.proc.returncode == 1, done.stderr
    (line,) = done.stdout.splitlines()
    assert failure(line, f"slack {ALERTS}") == (
        "channel_not_found",
        "check notifiers.slack.channel (the channel id, e.g. C0123456789) and invite the bot "
        "to a private channel",
    )


async def test_test_notify_webhook_failures_name_reason_and_remedy_once(write_config):
    """A webhook has no start-up check: a refusal, then a receiver that is gone."""
    hook = FakeWebhook()
    await hook.start()
    section = f'\n[notifiers.webhook]\nurl = "{hook.url}"\n'
    try:
        hook.fail(reply_status(404))
        done = await run_bot(
            "test-notify", "-c", write_config(extra=section), env=env(TEST_QUERY_KEY=QUERY_KEY)
        )
    finally:
        await hook.stop()
    assert done.proc.returncode == 1, done.stderr
    (line,) = done.stdout.splitlines()
    assert failure(line, f"webhook 127.0.0.1:{hook.port}") == (
        "HTTP 404 Not Found",
        "nothing takes POSTs there: check notifiers.webhook.url",
    )
    done = await run_bot(
        "test-notify", "-c", write_config(extra=section), env=env(TEST_QUERY_KEY=QUERY_KEY)
    )  # nothing listens on that port any more
    assert done.proc.returncode == 1, done.stderr
    (line,) = done.stdout.splitlines()
    reason, remedy = failure(line, f"webhook 127.0.0.1:{hook.port}")
    assert reason.startswith("not sent: ClientConnectorError")
    assert remedy == "check that the receiver is up and notifiers.webhook.url"


async def test_test_notify_exits_0_when_all_accepted_and_covers_groups(write_config, tg):
    groups = f"\n[notifiers.telegram.groups]\noncall = [{OTHER}]\n"
    path = write_config(extra=telegram_section(tg, chats=(CHAT,)) + groups)
    tg.fail("sendMessage", retry_after(1))  # a Retry-After of up to 5 s is waited for
    done = await run_bot("test-notify", "-c", path, env=env(TEST_QUERY_KEY=QUERY_KEY))
    assert done.proc.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"telegram {CHAT}: ok", f"telegram {OTHER}: ok"]


async def test_test_notify_with_the_log_fallback_and_a_bad_config(tmp_path, write_config):
    done = await run_bot("test-notify", "-c", write_config(), env=env(TEST_QUERY_KEY=QUERY_KEY))
    assert done.proc.returncode == 0 and done.stdout.splitlines() == ["log: ok"]
    assert "balance-bot test message" in done.stderr
    bad = await run_bot("test-notify", "-c", str(tmp_path / "missing.toml"))
    assert bad.proc.returncode == 3


# --- alerts-only Slack ----------------------------------------------------------------------


async def test_slack_without_an_app_token_posts_alerts_and_says_commands_are_off(
    make_config, comet, slack, caplog
):
    caplog.set_level(logging.INFO)
    comet.default = reply_balance(3)
    section = f"""
[notifiers.slack]
bot_token = "{BOT_TOKEN}"
channel = "{ALERTS}"
app_token = ""
api_url = "{slack.url}"
"""
    cfg = make_config(RULES + section)
    async with App(cfg, retry=FAST) as app:
        await app.start_notifiers(listen=True)
        await app.cycle()
        await app.delivery.deliver_due()
    (posted,) = slack.posted
    assert "main / total: $3.00" in str(posted.blocks)
    assert not [b for b in posted.blocks if b["type"] == "actions"]  # no buttons to press
    assert slack.connections == 0 and not slack.calls_of("apps.connections.open")
    (note,) = [r for r in caplog.records if r.getMessage() == "slack.alerts_only"]
    assert "/balance and buttons are off" in note.fields["hint"]


# --- wording ----------------------------------------------------------------------------------


def test_a_message_leaving_late_says_when_its_data_is_from():
    fire = Event(
        EventKind.FIRE, "main", T0, Severity.WARNING, "low", "total", "total",
        value=15.0, usd=15.0, threshold=20.0, recover_at=25.0,
    )  # fmt: skip
    zone = ZoneInfo("Europe/Berlin")
    on_time = events_message([fire], AsOf(T0 + timedelta(seconds=200), 300, zone))
    late = events_message([fire], AsOf(T0 + timedelta(seconds=400), 300, zone))
    assert "Data from" not in " ".join(on_time.plain_lines())
    assert late.plain_lines()[-1] == (
        "Data from 2026-01-01 01:00 CET (this message was held up 6m)"
    )
    assert plain(late.sections[0].lines[0]).count("WARNING") == 1  # severity once per line


async def test_a_message_held_in_the_outbox_leaves_with_the_time_of_its_data(
    make_config, comet, tg
):
    comet.default = reply_balance(3)
    clock = Clock(T0)
    rule = '[[rules]]\nname = "low"\ntarget = "total"\nbelow = 5\n'
    cfg = make_config(rule + telegram_section(tg, chats=(CHAT,)))  # interval 1s
    tg.fail("sendMessage", server_error(502))  # Telegram is down for a while
    async with App(cfg, retry=FAST, clock=clock) as app:
        await app.start_notifiers(listen=False)
        await app.cycle()
        await app.delivery.deliver_due()
        assert tg.sent == []
        clock.advance(600)  # ten minutes later it answers again
        await app.delivery.deliver_due()
    (sent,) = tg.sent
    assert "Data from 2026-01-01 00:00 UTC (this message was held up 10m)" in sent.text


def test_a_library_error_about_upstream_trouble_is_one_line():
    record = logging.LogRecord(
        "telegram.request", logging.ERROR, __file__, 1, 'Can not load invalid JSON data: "%s"',
        ("<html>" + "x" * 500,), None,
    )  # fmt: skip
    try:
        json.loads("<html>")
    except json.JSONDecodeError:
        record.exc_info = sys.exc_info()
    assert OneLineFilter().filter(record)
    assert record.exc_info is None and record.exc_text is None
    text = record.getMessage()
    assert "JSONDecodeError" in text and "\n" not in text and len(text) < 400
    own = logging.LogRecord("bot.app.cycle", logging.ERROR, __file__, 1, "cycle.crashed", (), None)
    try:
        raise OSError("disk")
    except OSError:
        own.exc_info = sys.exc_info()
    OneLineFilter().filter(own)
    assert own.exc_info is not None  # our own trouble keeps its traceback


async def test_an_odd_telegram_reply_is_one_log_line_and_the_alert_waits(write_config, comet, tg):
    """Telegram answers an HTML page: the library's complaint is one line, no
    traceback, and the alert stays in the outbox for the next run."""
    comet.default = reply_balance(3)
    tg.fail("sendMessage", lambda: web.Response(text="<html>Bad Gateway</html>", status=200))
    path = write_config(extra=telegram_section(tg, chats=(CHAT,)))
    done = await run_bot("check", "-c", path, env=env(TEST_QUERY_KEY=QUERY_KEY))
    assert done.proc.returncode == 2  # the critical rule of the default rules fires
    assert "Traceback" not in done.stderr
    assert any("JSONDecodeError" in x or "invalid JSON" in x for x in done.stderr.splitlines())
    assert "delivery.retry" in done.stderr and tg.sent == []


async def test_init_writes_where_validate_will_look(tmp_path):
    init = await run_bot("-c", "mine.toml", "init", cwd=tmp_path)
    assert init.proc.returncode == 0 and init.stdout.startswith("wrote mine.toml")
    shell = env(COMETAPI_QUERY_KEY=QUERY_KEY, BALANCE_BOT_CONFIG="theirs.toml")
    assert (await run_bot("init", env=shell, cwd=tmp_path)).proc.returncode == 0
    assert (tmp_path / "mine.toml").exists() and (tmp_path / "theirs.toml").exists()
    validate = await run_bot("validate", env=shell, cwd=tmp_path)
    assert validate.proc.returncode == 0 and "theirs.toml: OK" in validate.stdout


def test_the_test_message_shows_no_literal_backticks(make_config):
    """Chat text is escaped, so `balance-bot test-notify` showed its backticks."""
    from bot.app.testnotify import test_message

    message = test_message(T0, make_config())
    text = "\n".join(message.plain_lines())
    assert "`" not in text and "Sent by balance-bot test-notify at" in text
    spans = message.sections[0].lines[0]
    assert [s.text for s in spans if s.bold] == ["balance-bot test-notify"]


def test_env_example_lists_every_variable_init_names():
    from bot.app.starter import VARIABLES

    listed = {
        line.split("=", 1)[0]
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    }
    wanted = {name for names in VARIABLES.values() for name, _ in names}
    assert wanted <= listed, sorted(wanted - listed)
