"""Config: interpolation, durations, unknown keys, cross-field checks, all reported by path."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.cli import main as cli_main
from bot.config import ConfigError, parse, parse_duration

ROOT = Path(__file__).resolve().parent.parent

BASE = """
[[accounts]]
name = "main"
key = "k-0123456789"

[[rules]]
name = "low"
target = "total"
below = 20
"""


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(text, env or {})
    return info.value.problems


def test_minimal_config_gets_spec_defaults():
    cfg = parse(BASE, {})
    assert cfg.bot.interval == 300 and cfg.bot.stale_after == 3 and cfg.bot.request_timeout == 10
    assert cfg.bot.http_listen == "127.0.0.1:9464" and cfg.bot.timezone == "UTC"
    assert cfg.accounts[0].url == "https://query.cometapi.com/user/quota"
    rule = cfg.rules[0]
    assert rule.kind.recover_at == pytest.approx(22.0)  # below * 1.1
    assert rule.accounts == ("*",) and rule.for_polls == 1 and rule.repeat is None
    assert rule.notify is None and rule.severity == "warning"


def test_three_problems_named_by_path_at_once():
    text = (
        BASE.replace('key = "k-0123456789"', 'key = "${COMET_KEY}"')
        + """
[[rules]]
name = "r1"
target = "total"
below = 5.0
recover_above = 5.0
severty = "critical"
"""
    )
    found = problems(text)
    assert "accounts[0].key: environment variable COMET_KEY is not set" in found
    assert "rules[1].recover_above: must be greater than below (5.0)" in found
    assert any(p.startswith("rules[1].severty: unknown key") for p in found)
    assert len(found) == 3


def test_interpolation_with_default_and_set_variable():
    text = BASE.replace('"k-0123456789"', '"${K}"') + '\n[bot]\ninterval = "${IV:-30s}"\n'
    cfg = parse(text, {"K": "from-env-123"})
    assert cfg.accounts[0].key == "from-env-123"
    assert cfg.bot.interval == 30


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("30s", 30), ("5m", 300), ("2h", 7200), ("1d", 86400), (45, 45), ("90", 90), (1.5, 1.5)],
)
def test_durations(value, seconds):
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["5x", "-1s", "", "m", True, [1]])
def test_bad_durations(value):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(value)


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (
            "below = 5\nbelow_percent = 10",
            "rules[0].below_percent: set below or below_percent, not both",
        ),
        ("", "rules[0]: set below (USD), below_percent, days_left_below or spend_above"),
        ("below_percent = 10\nrecover_above = 3", "rules[0].recover_above: needs below"),
        (
            "below_percent = 10\nrecover_above_percent = 9",
            "rules[0].recover_above_percent: must be greater than below_percent (10.0)",
        ),
        ('below = 5\ntarget2 = "x"', "rules[0].target2: unknown key"),
        ('below = 5\naccounts = [""]', "rules[0].accounts[0]: string should have at least 1"),
        ('below = 5\nseverity = "fatal"', "rules[0].severity:"),
        ('below = 5\nrepeat = "often"', "rules[0].repeat: must be a duration"),
        ("below = 5\nfor_polls = 0", "rules[0].for_polls:"),
        ('below = 5\nkeys = ["prod-*"]', 'rules[0].keys: only applies to target = "key"'),
    ],
)
def test_rule_problems(rule, expected):
    text = f"""
[[accounts]]
name = "main"
key = "k-0123456789"

[[rules]]
name = "r"
target = "total"
{rule}
"""
    found = problems(text)
    assert any(p.startswith(expected) for p in found), found


def test_cross_item_checks():
    text = (
        BASE
        + """
[[rules]]
name = "low"
target = "key"
below = 1
notify = ["telegram", "log"]

[[accounts]]
name = "main"
key = "other-key-123"
"""
    )
    found = problems(text)
    assert "rules[1].name: duplicate name 'low' (also rules[0])" in found
    assert "accounts[1].name: duplicate name 'main' (also accounts[0])" in found
    assert "rules[1].notify[0]: no notifier 'telegram' is configured (configured: none)" in found
    assert not any("notify[1]" in p for p in found)  # log is always available


def test_unknown_notifier_and_bad_notifier_section():
    text = (
        BASE
        + """
[notifiers.pager]
x = 1

[notifiers.telegram]
token = "123456:ABCDEF"
chat_ids = []
colour = "red"
"""
    )
    found = problems(text)
    assert any(p.startswith("notifiers.pager: unknown notifier (installed: ") for p in found)
    assert any(p.startswith("notifiers.telegram.chat_ids:") for p in found)
    assert any(p.startswith("notifiers.telegram.colour: unknown key") for p in found)


@pytest.mark.parametrize(
    ("bot", "expected"),
    [
        ('interval = "0.5s"', "bot.interval: must be at least 1s"),
        ('request_timeout = "45s"', "bot.request_timeout: must be between 0s and 30s"),
        ('http_listen = "nowhere"', "bot.http_listen: must be 'host:port'"),
        ('timezone = "Mars/Olympus"', "bot.timezone: unknown time zone"),
        ("stale_after = 0", "bot.stale_after:"),
    ],
)
def test_bot_problems(bot, expected):
    found = problems(BASE + f"\n[bot]\n{bot}\n")
    assert any(p.startswith(expected) for p in found), found


def test_invalid_toml_and_missing_sections():
    assert problems("[[accounts]\n")[0].startswith("config: invalid TOML")
    found = problems("")
    assert "accounts: required" in found and "rules: required" in found


def test_secret_never_in_problem_text():
    text = BASE.replace('"k-0123456789"', "12345")  # a number where a string is due
    text = text.replace("below = 20", 'below = "sk-visible-secret"')
    found = problems(text)
    assert all("sk-visible-secret" not in p and "12345" not in p for p in found), found


def test_values_from_the_environment_are_shown_as_their_placeholder():
    """A token in the wrong variable or field must not be echoed by the message
    that rejects it; nor a key typed into the URL's query string."""
    text = BASE.replace("[[rules]]", 'url = "${WHERE}"\n\n[[rules]]')
    text = '[bot]\ninterval = "${TOKEN}"\n' + text
    found = problems(text, {"TOKEN": "sk-env-secret-77", "WHERE": "sk-env-where-88"})
    assert found == [
        "bot.interval: must be a duration such as '30s', '5m', '2h', '1d' or seconds, "
        "not '${TOKEN}'",
        "accounts[0].url: must be an http(s) URL without a query string, not '${WHERE}'",
    ]
    typed = BASE.replace("[[rules]]", 'url = "https://h/user/quota?key=sk-typed-in-88"\n[[rules]]')
    (problem,) = problems(typed)
    assert "sk-typed-in-88" not in problem and "?key=***" in problem


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def test_validate_example_config_exits_0_with_its_env_vars():
    env = {
        "COMETAPI_QUERY_KEY": "sk-example-query-key",
        "TELEGRAM_BOT_TOKEN": "123456:ABC-example",
        "SLACK_BOT_TOKEN": "xoxb-example",
        "SLACK_APP_TOKEN": "xapp-example",
    }
    done = cli("validate", "-c", "rules.example.toml", env=env)
    assert done.returncode == 0, done.stderr
    assert "OK" in done.stdout


def test_validate_bad_config_exits_3_naming_each_problem(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_text(
        BASE.replace('"k-0123456789"', '"${UNSET_VAR_FOR_TEST}"')
        + """
[[rules]]
name = "r1"
target = "total"
below = 5.0
recover_above = 4.0
belw = 3
"""
    )
    done = cli("validate", "-c", str(path))
    assert done.returncode == 3
    assert "accounts[0].key: environment variable UNSET_VAR_FOR_TEST is not set" in done.stderr
    assert "rules[1].recover_above: must be greater than below (5.0)" in done.stderr
    assert "rules[1].belw: unknown key" in done.stderr


def test_config_path_from_env_and_missing_file(tmp_path):
    done = cli("validate", env={"BALANCE_BOT_CONFIG": str(tmp_path / "nope.toml")})
    assert done.returncode == 3
    assert "nope.toml: file not found" in done.stderr


toml_scalars = st.one_of(
    st.integers(-5, 10**6),
    st.floats(allow_nan=False),
    st.booleans(),
    st.text(max_size=12),
    st.sampled_from(["5m", "0", "${HOME}", "${NOPE}", "${X:-1s}", "*", "total", "key", "critical"]),
    st.lists(st.one_of(st.integers(-3, 3), st.text(max_size=5)), max_size=3),
)
toml_keys = st.sampled_from(
    [
        "name",
        "key",
        "url",
        "target",
        "below",
        "below_percent",
        "recover_above",
        "recover_above_percent",
        "accounts",
        "keys",
        "exclude_keys",
        "notify",
        "severity",
        "repeat",
        "for_polls",
        "interval",
        "stale_after",
        "http_listen",
        "timezone",
        "bogus",
        "chat_ids",
        "token",
        "channel",
        "bot_token",
        "app_token",
    ]
)
sections = st.sampled_from(
    [
        "bot",
        "accounts",
        "rules",
        "notifiers.telegram",
        "notifiers.slack",
        "notifiers.log",
        "notifiers.nope",
        "extra",
    ]
)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v in (float("inf"), float("-inf")):
        return "inf" if v > 0 else "-inf"
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(v)


def _document(doc: list[tuple[str, bool, dict]]) -> str:
    lines, seen = [], set()
    for section, array, table in doc:
        if not array and section in seen:
            continue
        seen.add(section)
        lines.append(f"[[{section}]]" if array and "." not in section else f"[{section}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in table.items())
    return "\n".join(lines)


documents = st.lists(
    st.tuples(sections, st.booleans(), st.dictionaries(toml_keys, toml_scalars, max_size=7)),
    max_size=6,
)


@settings(max_examples=200, deadline=None)
@given(st.one_of(documents.map(_document), st.text(max_size=80)))
def test_validate_on_random_documents_exits_0_or_3_without_a_traceback(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("fuzz") / "rules.toml"
    path.write_text(text)
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli_main(["validate", "-c", str(path)])
    assert code in (0, 3)
    assert "Traceback" not in err.getvalue()
    if code == 3:
        assert "problem" in err.getvalue() and ": " in err.getvalue()
    else:
        assert "OK" in out.getvalue()


# --- a file tomllib cannot take, odd $ forms, empty globs --------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("x = " + "[" * 5000 + "]" * 5000, "nested too deeply"),
        ("x = " + "{a=" * 3000 + "1" + "}" * 3000, "nested too deeply"),
        ("x = 1" + "0" * 5000, "digits"),  # ValueError out of int()
    ],
)
def test_file_tomllib_cannot_parse_is_one_config_error(tmp_path, value, expected):
    from bot.config import load

    path = tmp_path / "deep.toml"
    path.write_text(BASE + value + "\n")
    with pytest.raises(ConfigError) as info:
        load(path, {})
    (problem,) = info.value.problems
    assert problem.startswith(f"{path}: ") and expected in problem and "\n" not in problem


def test_deep_dotted_key_is_named_by_its_path():
    """tomllib builds `x.a.a.a…` without recursing; what follows must not recurse either."""
    found = problems("x." + ".".join(["a"] * 3000) + " = 1\n" + BASE)
    (problem,) = found
    assert problem.startswith("x.a.a.a.a") and "nested too deeply" in problem, problem


def test_validate_deeply_nested_file_exits_3_without_traceback(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_text(BASE + "x = " + "[" * 5000 + "]" * 5000 + "\n")
    done = cli("validate", "-c", str(path))
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert f"{path}: " in done.stderr and "nested too deeply" in done.stderr


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("${K-fallback}", "accounts[0].url: ${K-fallback} is not replaced by the environment"),
        ("${K:=x}", "accounts[0].url: ${K:=x} is not replaced by the environment"),
        ("${K", "accounts[0].url: ${K has no closing brace"),
        ("$(K)", "accounts[0].url: $(K) is not replaced by the environment"),
        ("$K", "accounts[0].url: $K is not replaced by the environment: write ${K}"),
        ("${K:-${J}}", "accounts[0].url: ${K:-${J}} is not replaced by the environment"),
        ("${K:-$J}", "accounts[0].url: ${K:-$J} is not replaced by the environment"),
        ("https://${K}/$(J)", "accounts[0].url: $(J) is not replaced by the environment"),
        ("${ K }", "accounts[0].url: ${ K } is not replaced by the environment"),
    ],
)
def test_dollar_forms_that_would_be_sent_literally(value, expected):
    text = BASE.replace("[[rules]]", f'url = "{value}"\n\n[[rules]]')
    found = problems(text, {"K": "h.example", "J": "x"})
    assert len(found) == 1 and found[0].startswith(expected), found
    assert "${VAR}" in found[0] or "${K}" in found[0], found  # says what is accepted


def test_dollar_before_anything_else_and_dollars_in_values_are_fine():
    text = BASE.replace('name = "low"', 'name = "price in $5, $ and $$ and $-${N}$"')
    text = text.replace('"k-0123456789"', '"${K}"')
    cfg = parse(text, {"K": "k-$(cmd)${X}$Y-${Z", "N": "1"})
    assert cfg.rules[0].name == "price in $5, $ and $$ and $-1$"
    assert cfg.accounts[0].key == "k-$(cmd)${X}$Y-${Z"  # the environment's value, verbatim


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("accounts = []", "rules[0].accounts: must not be empty (leave it out for every account)"),
        (
            'target = "key"\nkeys = []',
            "rules[0].keys: must not be empty (leave it out for every key)",
        ),
    ],
)
def test_empty_globs_could_never_fire(rule, expected):
    text = BASE.replace('target = "total"\n', "" if "target" in rule else 'target = "total"\n')
    assert problems(text.replace("below = 20", f"below = 20\n{rule}")) == [expected]
    keyed = BASE.replace('"total"', '"key"').replace("below = 20", "below = 20\nexclude_keys = []")
    assert parse(keyed, {}).rules[0].exclude_keys == ()


# --- a newcomer's first mistakes: one line each, with the remedy (issue 20) ---------


def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """The command line in this process (fast): exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    saved = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        with redirect_stdout(out), redirect_stderr(err):
            code = cli_main(list(args))
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return code, out.getvalue(), err.getvalue()


def test_a_missing_config_says_where_it_was_looked_for_and_to_run_init(tmp_path):
    missing = tmp_path / "rules.toml"
    code, _, err = run_cli("validate", "-c", str(missing))
    assert code == 3
    assert f"{missing}: file not found; `balance-bot init` writes a starter config there" in err
    assert "-c/--config FILE, else $BALANCE_BOT_CONFIG, else ./rules.toml" in err


def test_a_folder_given_as_the_config_says_to_name_the_file(tmp_path):
    code, _, err = run_cli("validate", "-c", str(tmp_path))
    assert code == 3
    assert (
        f"{tmp_path}: is a folder; name the config file in it (e.g. -c {tmp_path}/rules.toml)"
        in err
    )
    assert "Errno" not in err


def test_a_missing_state_folder_is_a_config_problem_with_its_remedy(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_text('[bot]\nstate_path = "state/bot.db"\n' + BASE)
    code, _, err = run_cli("validate", "-c", str(path))
    assert code == 3
    folder = tmp_path / "state"
    assert (
        f"bot.state_path: folder {folder} does not exist; create it (mkdir -p {folder}) "
        "or point state_path at an existing folder"
    ) in err
    elsewhere = tmp_path / "nowhere" / "bot.db"
    code, _, err = run_cli(
        "validate", "-c", str(path), env={"BALANCE_BOT_STATE_PATH": str(elsewhere)}
    )
    assert code == 3 and "or point $BALANCE_BOT_STATE_PATH at an existing folder" in err
    folder.mkdir()
    assert run_cli("validate", "-c", str(path))[0] == 0


TELEGRAM = """
[notifiers.telegram]
token = "123456:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
chat_ids = ["${TELEGRAM_CHAT_ID}"]
"""


def test_a_telegram_username_instead_of_a_chat_id_says_how_to_find_the_id():
    (problem,) = problems(BASE + TELEGRAM, {"TELEGRAM_CHAT_ID": "@mychan"})
    assert problem == (
        "notifiers.telegram.chat_ids[0]: must be a numeric chat id such as 123456789 or "
        "-1001234567890, not a @username: send /id to the bot in that chat to see it (until "
        "then any number runs the bot, e.g. 1) (from $TELEGRAM_CHAT_ID)"
    )
    assert "valid integer" not in problem
    cfg = parse(BASE + TELEGRAM, {"TELEGRAM_CHAT_ID": "-1001234567890"})
    assert cfg.notifiers["telegram"].chat_ids == [-1001234567890]


def test_a_slack_channel_name_instead_of_its_id_is_a_problem():
    slack = '\n[notifiers.slack]\nbot_token = "xoxb-1-abcdefghij"\nchannel = "${SLACK_CHANNEL}"\n'
    (problem,) = problems(BASE + slack, {"SLACK_CHANNEL": "#general"})
    assert problem.startswith(
        "notifiers.slack.channel: must be a channel id such as C0123456789, not a #name: it is "
        "at the bottom of the channel's details"
    )
    assert parse(BASE + slack, {"SLACK_CHANNEL": "C0123456789"}).notifiers["slack"].channel
