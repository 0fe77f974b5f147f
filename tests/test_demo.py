"""`balance-bot demo`, as the README tells a newcomer to run it."""

from __future__ import annotations

from bot.app.demo import simulated_balance
from tests.process import BotProcess


def test_the_script_covers_fire_critical_resolve_and_outage():
    assert simulated_balance(0)["total_quota"] > 20
    assert 10 < simulated_balance(15)["total_quota"] < 20
    assert simulated_balance(30)["total_quota"] < 10
    assert simulated_balance(50)["total_quota"] >= 25
    assert simulated_balance(65) is None
    assert simulated_balance(100)["total_quota"] == simulated_balance(0)["total_quota"]


async def test_demo_fires_a_real_alert_and_stops_cleanly():
    bot = await BotProcess("demo", env={"TELEGRAM_BOT_TOKEN": "", "SLACK_BOT_TOKEN": ""}).start()
    await bot.wait_for(
        lambda lines: any("WARNING · demo / total" in line for line in lines), within=30
    )
    await bot.wait_for(lambda lines: any("delivery.sent" in line for line in lines), within=10)
    assert await bot.stop() == 0
    assert "demo.started" in bot.stderr and "http.listening" in bot.stderr
    assert "http.status_page" in bot.stderr  # the status page is on, its address said
    assert "Traceback" not in bot.stderr


async def test_demo_with_a_bad_variable_or_option_says_so_in_one_line():
    bad_chat = {"TELEGRAM_BOT_TOKEN": "123456:" + "A" * 35, "TELEGRAM_CHAT_ID": "@mychannel"}
    for args, env, needle in (
        (("demo",), bad_chat, "notifiers.telegram.chat_ids[0]"),
        (("demo", "--interval", "soon"), {"TELEGRAM_BOT_TOKEN": ""}, "bot.interval"),
    ):
        bot = await BotProcess(*args, env=env).start()
        assert await bot.wait(30) == 3
        (line,) = [x for x in bot.stderr.splitlines() if "demo.invalid" in x]
        assert needle in line
        assert "Traceback" not in bot.stderr


def test_with_telegram_set_the_demo_still_logs_its_messages(monkeypatch, tmp_path):
    """Telegram (or Slack) joins in; the log notifier stays, for every rule and the digest."""
    from bot import config as config_mod
    from bot.app.demo import demo_config_text, with_log
    from bot.app.fleet import active_notifier_names

    chat = {"TELEGRAM_BOT_TOKEN": "123456:" + "A" * 35, "TELEGRAM_CHAT_ID": "-1001234567890"}
    environ = {"BALANCE_BOT_DEMO_KEY": "demo-key-0123456789", **chat}
    for name, value in chat.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SLACK_BOT_TOKEN", raising=False)
    text = demo_config_text("2s", tmp_path / "demo.db", "http://127.0.0.1:9/user/quota", "")
    cfg = with_log(config_mod.parse(text, environ))
    assert active_notifier_names(cfg) == ["telegram", "log"]
    assert all(rule.notify == ("log", "telegram") for rule in cfg.rules)
    assert cfg.digest is not None and cfg.digest.notify is None  # every active notifier
    alone = with_log(config_mod.parse(text.split("[notifiers.telegram]")[0], environ))
    assert active_notifier_names(alone) == ["log"] and alone.rules[0].notify is None
