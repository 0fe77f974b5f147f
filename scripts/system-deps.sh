#!/usr/bin/env bash
# Installs, from the distribution's packages, the real components the tests start
# themselves: PostgreSQL (initdb, pg_ctl), Chromium (driven by Playwright) and
# promtool (checks the /metrics page). Does nothing when they are all present;
# uses apt-get (through sudo when not root). Part of the README's test command.
set -euo pipefail

have_postgres() {
    command -v initdb >/dev/null && command -v pg_ctl >/dev/null && return 0
    compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null
}
have_chromium() { command -v chromium >/dev/null || command -v chromium-browser >/dev/null; }
have_promtool() { command -v promtool >/dev/null; }

missing=()
have_postgres || missing+=(postgresql)
have_chromium || missing+=(chromium)
have_promtool || missing+=(prometheus)
[ ${#missing[@]} -eq 0 ] && exit 0

as_root=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || {
        echo "system-deps: missing ${missing[*]}; install them with your package manager (no root, no sudo)" >&2
        exit 1
    }
    as_root=(sudo)
fi
command -v apt-get >/dev/null || {
    echo "system-deps: missing ${missing[*]}; apt-get not available: install them by hand" >&2
    exit 1
}
echo "system-deps: installing ${missing[*]} with apt-get ..." >&2
log=$(mktemp)
if ! { "${as_root[@]}" apt-get update -qq \
        && DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq \
            --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    echo "system-deps: could not install ${missing[*]} with apt-get" >&2
    exit 1
fi
rm -f "$log"
