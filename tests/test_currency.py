"""Currencies end to end in pure code: the config refuses an amount over
accounts of different currencies, money reads in the account's currency in
every line, old events read as USD, and a used figure derived from balance
drops never counts a top-up."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from bot.app.history import derive_used
from bot.config import ConfigError, parse
from bot.engine.model import Event, EventKind, Severity, Snapshot
from bot.engine.text import money
from bot.notifiers.message import plain
from bot.notifiers.webhook import body, event_data
from bot.notify.render import event_line, events_message

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)

ACCOUNTS = """
[[accounts]]
name = "main"
key = "k-0123456789"

[[accounts]]
name = "cn"
key = "k-9876543210"
provider = "deepseek"
currency = "CNY"
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(text, {})
    return info.value.problems


@pytest.mark.parametrize("field", ["below = 20", 'spend_above = 20\nwindow = "1h"'])
def test_an_amount_over_two_currencies_is_an_error_naming_both(field):
    found = problems(ACCOUNTS + f'[[rules]]\nname = "r"\ntarget = "total"\n{field}\n')
    (problem,) = found
    assert problem.startswith("rules[0].") and "main (USD)" in problem and "cn (CNY)" in problem


@pytest.mark.parametrize("field", ["below_percent = 10", "days_left_below = 3"])
def test_shares_and_days_over_two_currencies_are_fine(field):
    cfg = parse(ACCOUNTS + f'[[rules]]\nname = "r"\ntarget = "total"\n{field}\n', {})
    assert {a.currency for a in cfg.accounts} == {"USD", "CNY"}


def test_one_rule_per_currency_is_fine_and_an_unknown_provider_names_those_installed():
    text = ACCOUNTS + '[[rules]]\nname = "r"\ntarget = "total"\naccounts = ["cn"]\nbelow = 50\n'
    (cn,) = [a for a in parse(text, {}).accounts if a.name == "cn"]
    assert (cn.provider, cn.currency, cn.currency_set) == ("deepseek", "CNY", True)
    (problem,) = problems(text.replace('"deepseek"', '"moonshot"'))
    assert "unknown provider 'moonshot'" in problem
    for name in ("cometapi", "deepseek", "newapi", "openrouter"):
        assert name in problem


def test_a_newapi_account_needs_its_url():
    text = '[[accounts]]\nname = "s"\nkey = "k-0123456789"\nprovider = "newapi"\n'
    text += '[[rules]]\nname = "r"\ntarget = "total"\nbelow = 5\n'
    assert any("url: required for provider 'newapi'" in p for p in problems(text))


@pytest.mark.parametrize(
    ("value", "currency", "shown"),
    [
        (12.345, "USD", "$12.35"),
        (12.3, "CNY", "¥12.30"),
        (1234.5, "EUR", "€1,234.50"),
        (-3, "CNY", "-¥3.00"),
        (7, "CHF", "7.00 CHF"),
        (None, "CNY", "?"),
    ],
)
def test_money(value, currency, shown):
    assert money(value, currency) == shown


def fire(**kw) -> Event:
    base = {
        "kind": EventKind.FIRE,
        "account": "cn",
        "at": NOW,
        "severity": Severity.WARNING,
        "rule": "low",
        "target": "total",
        "subject": "total",
        "value": 12.0,
        "usd": 12.0,
        "threshold": 50.0,
        "recover_at": 55.0,
        "since": NOW,
        "rate": 6.0,
        "days": 2.0,
        "currency": "CNY",
    }
    base.update(kw)
    return Event(**base)


def test_every_amount_of_an_alert_line_is_in_the_accounts_currency():
    line = plain(event_line(fire()))
    assert line == (
        "WARNING · cn / total: ¥12.00 left (below ¥50.00; resolves at ¥55.00), "
        "≈ 2.0 days left at ¥6.00/day"
    )
    spend = fire(unit="usd_spent", value=63.1, threshold=50.0, recover_at=40.0, window=3600.0)
    assert "¥63.10 spent in the last 1h (above ¥50.00; resolves at ¥40.00)" in plain(
        event_line(spend)
    )
    back = fire(kind=EventKind.AVAILABLE, since=NOW - timedelta(minutes=5))
    assert "balance ¥12.00 after 5m without data" in plain(event_line(back))


def test_events_stored_before_currencies_read_as_usd_and_new_ones_keep_theirs():
    stored = fire().to_dict()
    assert stored["v"] == 3 and Event.from_dict(stored).currency == "CNY"
    old = {k: v for k, v in stored.items() if k != "currency"} | {"v": 2}
    assert Event.from_dict(old).currency == "USD"


def test_the_webhook_body_has_the_spec_fields_and_says_the_currency_in_its_text():
    message = events_message([fire()])
    data = json.loads(body(message))
    assert "¥12.00 left" in data["text"]
    assert set(event_data(fire())) == {
        "kind", "severity", "rule", "account", "subject", "value", "threshold",
        "recover_at", "unit", "at",
    }  # fmt: skip


def test_snapshots_keep_currency_and_flags_through_the_state_codec():
    from bot.state.codec import snapshot_of, snapshot_text

    snap = Snapshot("cn", "", 5.0, 1.0, None, (), NOW, "CNY", True, False, False)
    assert snapshot_of(snapshot_text(snap)) == snap
    old = json.loads(snapshot_text(snap))
    for field in ("currency", "used_derived", "available", "unlimited"):
        del old[field]
    assert snapshot_of(json.dumps(old)).currency == "USD"


def test_a_derived_used_figure_grows_with_drops_and_never_with_a_top_up():
    from bot.app.history import advance

    ledger = None
    used = []
    for i, balance in enumerate([100.0, 90.0, 85.0, 500.0, 480.0, 480.0]):
        snap = Snapshot("cn", "", balance, 0.0, None, (), NOW, "CNY", used_derived=True)
        snap = derive_used(ledger, snap)
        ledger, _ = advance(ledger, snap, NOW.timestamp() + i)
        used.append(snap.total_used_quota)
    assert used == [0.0, 10.0, 15.0, 15.0, 35.0, 35.0]
    reported = Snapshot("x", "", 5.0, 7.0, None, (), NOW)
    assert derive_used(ledger, reported) is reported  # a provider's own figure is kept


def test_init_adds_an_account_per_provider_that_validates_once_its_variables_are_set(
    tmp_path, capsys
):
    from bot.cli import main

    out = tmp_path / "rules.toml"
    args = ["init", "--provider", "deepseek", "--provider", "newapi", "--provider", "openrouter"]
    assert main([*args, "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    for name in ("NEWAPI_URL", "NEWAPI_KEY", "OPENROUTER_MANAGEMENT_KEY", "DEEPSEEK_API_KEY"):
        assert f"export {name}=..." in printed
    env = {
        "COMETAPI_QUERY_KEY": "sk-q-0123456789",
        "NEWAPI_URL": "https://api.example.com",
        "NEWAPI_KEY": "sk-n-0123456789",
        "OPENROUTER_MANAGEMENT_KEY": "sk-or-0123456789",
        "DEEPSEEK_API_KEY": "sk-d-0123456789",
    }
    cfg = parse(out.read_text(), env)
    assert [(a.name, a.provider) for a in cfg.accounts] == [
        ("main", "cometapi"),
        ("deepseek", "deepseek"),
        ("newapi", "newapi"),
        ("openrouter", "openrouter"),
    ]
    assert '\n\n[[accounts]]\nname = "deepseek"' in out.read_text()


def test_titles_name_cometapi_only_while_every_account_is_one():
    from bot.notify.render import name_providers

    assert events_message([fire()]).title.startswith("CometAPI balance")
    name_providers(["cometapi", "deepseek"])
    assert events_message([fire()]).title.startswith("AI credit balance")
    name_providers(["cometapi"])


def test_status_and_still_firing_say_the_money_in_the_accounts_currency():
    from bot.app.views import firing_events
    from bot.engine.model import AlertKey, AlertState, EngineState
    from bot.notify.render import status_message
    from tests.helpers import rule

    low = rule(name="low", below=50.0, recover_above=55.0)
    key = AlertKey("low", "cn", "total")
    state = EngineState({key: AlertState(key, True, 1, 12.0, NOW, NOW)})
    snap = Snapshot("cn", "", 12.0, 3.0, None, (), NOW, "CNY", used_derived=True)
    firing, _ = firing_events(state, [low], lambda a: snap if a == "cn" else None, NOW)
    text = "\n".join(status_message(firing, []).plain_lines())
    assert "cn / total: ¥12.00 left (below ¥50.00; resolves at ¥55.00)" in text


def test_balance_shows_currency_availability_derived_used_and_an_unlimited_total():
    from zoneinfo import ZoneInfo

    from bot.app.views import balance_view
    from bot.engine.model import EngineState, Figures, KeyBalance

    seek = Snapshot("seek", "", 80.5, 19.5, None, (), NOW, "CNY", True, False)
    site = Snapshot("site", "", 0.0, 4.0, None, (), NOW, "USD", unlimited=True)
    router = Snapshot(
        "router", "", 9.0, 1.0, None, (KeyBalance("a", 2.0, 1.0), KeyBalance("b", -1, -1)), NOW
    )
    fetched = {"seek": (seek, ""), "site": (site, ""), "router": (router, "")}
    burn = {"seek": Figures(43.2), "site": Figures(2.0)}
    text = "\n".join(
        balance_view(fetched, [], EngineState(), burn, NOW, ZoneInfo("UTC")).plain_lines()
    )
    assert "Balance: ¥80.50" in text and "not available for API calls" in text
    assert "Used: ¥19.50 (from balance drops since first seen)" in text
    assert "Burn: ¥43.20/day, ≈ 1.9 days left" in text
    assert "Balance: unlimited" in text and "Burn: $2.00/day\n" in text
    assert "a: $2.00 left, $1.00 used" in text and "b: unlimited" in text
