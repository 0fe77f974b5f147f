#!/usr/bin/env bash
# Container smoke test: build the real Dockerfile and run the image, without a
# Docker engine or a registry (see docs/container.md, "Testing the image").
#
#   sudo scripts/container-smoke-test.sh
#
# 1. installs buildah + debootstrap if missing (apt-get);
# 2. builds a local base image localhost/debian-python:bookworm (Debian
#    minbase + python3 + python3-venv) with debootstrap -- only if buildah
#    does not have it yet, so repeat runs skip this (~1 min) step;
# 3. builds ./Dockerfile on that base (no layer cache: with vfs storage every
#    cached layer is a full copy, slower than the build itself and gigabytes
#    on disk; the previous smoke image is removed) and checks the image
#    config (HEALTHCHECK, user, entrypoint, env, volume, port);
# 4. runs the image with buildah run (chroot isolation, host network):
#    validate, check against a fake CometAPI on 127.0.0.1 (WARNING then OK),
#    run with /healthz + /metrics polled from the host and the image's own
#    HEALTHCHECK command, SIGTERM -> exit 0, nothing written outside /data,
#    non-root user owning /data.
#
# Needs root. Prints PASS/FAIL lines; exits non-zero on any failure.
# Knobs: SMOKE_PORT (19464), SMOKE_IMAGE (localhost/balance-bot:smoke),
# SMOKE_REBUILD_BASE=1 (rebuild the base image), DEBIAN_MIRROR.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
START=$SECONDS

IMAGE=${SMOKE_IMAGE:-localhost/balance-bot:smoke}
BASE_IMAGE=localhost/debian-python:bookworm
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PORT=${SMOKE_PORT:-19464}
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
BUILDAH=(buildah --storage-driver vfs)
RUN=(--isolation chroot --network host)
# Distinctive keys, so a leak into a log line is easy to spot.
LOW_KEY=smoke-low-key-5f3a9c1e7b
OK_KEY=smoke-ok-key-8d2b6e4f0a

failures=0
pass() { printf 'PASS  %s\n' "$*"; }
fail() {
    printf 'FAIL  %s\n' "$*"
    failures=$((failures + 1))
}
die() {
    printf 'FAIL  %s\n' "$*"
    printf '\nRESULT: FAIL (container smoke test aborted after %ss)\n' "$((SECONDS - START))"
    exit 1
}
step() { printf '\n== %s\n' "$*"; }
elapsed() { printf '%ss' "$((SECONDS - START))"; }

# ---------------------------------------------------------------- cleanup --
WORK=$(mktemp -d /tmp/balance-bot-smoke.XXXXXX)
chmod 0755 "$WORK"
CONTAINERS=()
PIDS=()     # processes this script started (fake API, buildah run)
BOT_PID=""  # the bot inside `buildah run` (no PID namespace with chroot isolation)

cleanup() {
    local rc=$? pid ctr
    set +e
    [ -n "$BOT_PID" ] && kill -KILL "$BOT_PID" 2>/dev/null
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
    for ctr in "${CONTAINERS[@]}"; do "${BUILDAH[@]}" rm "$ctr" >/dev/null 2>&1; done
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

new_container() {  # new_container IMAGE -> sets CTR, the working container's name
    # Not called as $(new_container ...): in a subshell, CONTAINERS+= would be
    # lost and cleanup would leave the container (a full image copy) behind.
    CTR=$("${BUILDAH[@]}" from --pull-never --quiet "$1") || return 1
    CONTAINERS+=("$CTR")
}

http_get() {  # http_get URL -> prints "STATUS BODY" (STATUS 000 if unreachable)
    python3 - "$1" <<'EOF'
import sys, urllib.error, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=3) as r:
        print(r.status, r.read().decode(errors="replace"))
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode(errors="replace"))
except OSError as e:
    print("000", e)
EOF
}

port_free() {
    python3 -c 'import socket,sys; s=socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1])))' "$1" \
        2>/dev/null
}

# ------------------------------------------------------------------ tools --
step "tools"
[ "$(id -u)" = 0 ] || die "must run as root (buildah with vfs storage and chroot isolation, debootstrap)"
command -v python3 >/dev/null || die "python3 is needed on the host (fake CometAPI, HTTP probes)"
if ! command -v buildah >/dev/null || ! command -v debootstrap >/dev/null \
    || ! command -v pgrep >/dev/null; then
    command -v apt-get >/dev/null \
        || die "buildah, debootstrap and pgrep are missing and apt-get is not available: install them by hand"
    echo "installing buildah, debootstrap, procps with apt-get ..."
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends buildah debootstrap procps; } \
        >"$WORK/apt.log" 2>&1; then
        tail -n 20 "$WORK/apt.log"
        die "could not install buildah/debootstrap with apt-get (no package mirror reachable?)"
    fi
fi
pass "tools: $(buildah --version | head -n1), debootstrap $(dpkg-query -W -f='${Version}' debootstrap 2>/dev/null || echo '?')"

# ------------------------------------------------------------- base image --
step "base image $BASE_IMAGE"
if [ "${SMOKE_REBUILD_BASE:-0}" != 1 ] \
    && "${BUILDAH[@]}" images --noheading --format '{{.Name}}:{{.Tag}}' 2>/dev/null \
    | grep -qxF "$BASE_IMAGE"; then
    pass "base image: cached"
else
    echo "debootstrap $SUITE from $MIRROR (about a minute) ..."
    rootfs=$WORK/rootfs
    if ! debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        "$SUITE" "$rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1; then
        tail -n 20 "$WORK/debootstrap.log"
        die "debootstrap failed (log above)"
    fi
    # Trim like the official slim images: no package caches, lists or docs.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
        "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
    tar -C "$rootfs" -cf "$WORK/rootfs.tar" .
    rm -rf "$rootfs"
    ctr=$("${BUILDAH[@]}" from scratch)
    CONTAINERS+=("$ctr")
    "${BUILDAH[@]}" add "$ctr" "$WORK/rootfs.tar" / >/dev/null
    "${BUILDAH[@]}" config \
        --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --env LANG=C.UTF-8 --cmd python3 "$ctr"
    "${BUILDAH[@]}" commit --quiet --format docker "$ctr" "$BASE_IMAGE" >/dev/null
    rm -f "$WORK/rootfs.tar"
    pass "base image: built in $(elapsed)"
fi

# ------------------------------------------------------------------ build --
step "build $IMAGE"
build_start=$SECONDS
mounts=()
# pip in the build trusts the host's CA bundle (TLS-intercepting proxies).
[ -f "$CA_BUNDLE" ] && mounts=(-v "$CA_BUNDLE:$CA_BUNDLE:ro")
image_id() { "${BUILDAH[@]}" images --noheading --no-trunc --format '{{.ID}}' "$1" 2>/dev/null | head -n1; }
old_image=$(image_id "$IMAGE" || true)
if ! "${BUILDAH[@]}" bud --format docker "${RUN[@]}" "${mounts[@]}" \
    --build-arg BASE_IMAGE="$BASE_IMAGE" -t "$IMAGE" -f Dockerfile . >"$WORK/build.log" 2>&1; then
    tail -n 30 "$WORK/build.log"
    die "buildah bud failed (log above)"
fi
# The previous smoke image, now untagged: remove it (ignored if in use).
if [ -n "$old_image" ] && [ "$old_image" != "$(image_id "$IMAGE" || true)" ]; then
    "${BUILDAH[@]}" rmi "$old_image" >/dev/null 2>&1 || true
fi
size=$("${BUILDAH[@]}" images --noheading --format '{{.Size}}' "$IMAGE" | head -n1)
pass "build: $IMAGE in $((SECONDS - build_start))s, size $size"

# The image config: HEALTHCHECK (kept only by --format docker), user, etc.
"${BUILDAH[@]}" inspect --type image "$IMAGE" >"$WORK/inspect.json"
python3 - "$WORK/inspect.json" >"$WORK/inspect.out" <<'EOF'
import json, sys
cfg = json.load(open(sys.argv[1]))["Docker"]["config"]
env = dict(e.split("=", 1) for e in cfg.get("Env") or [])
hc = cfg.get("Healthcheck") or {}
checks = [
    ("HEALTHCHECK on /healthz", hc.get("Test", [None])[0] == "CMD"
        and "/healthz" in " ".join(hc.get("Test", [])), hc.get("Test")),
    ("USER is a numeric non-root UID", (cfg.get("User") or "0").split(":")[0].isdigit()
        and (cfg.get("User") or "0").split(":")[0] != "0", cfg.get("User")),
    ("ENTRYPOINT/CMD exec form", cfg.get("Entrypoint") == ["balance-bot"]
        and cfg.get("Cmd") == ["run"], (cfg.get("Entrypoint"), cfg.get("Cmd"))),
    ("WORKDIR /data, VOLUME /data", cfg.get("WorkingDir") == "/data"
        and "/data" in (cfg.get("Volumes") or {}), (cfg.get("WorkingDir"), cfg.get("Volumes"))),
    ("EXPOSE 9464", "9464/tcp" in (cfg.get("ExposedPorts") or {}), cfg.get("ExposedPorts")),
    ("ENV", env.get("BALANCE_BOT_CONFIG") == "/config/rules.toml"
        and env.get("BALANCE_BOT_STATE_PATH") == "/data/balance-bot.db"
        and env.get("BALANCE_BOT_HTTP_LISTEN") == "0.0.0.0:9464"
        and env.get("PYTHONUNBUFFERED") == "1",
        {k: v for k, v in env.items() if k.startswith(("BALANCE", "PYTHON"))}),
]
for name, ok, value in checks:
    print(f"{'PASS' if ok else 'FAIL'}  image config: {name}: {value}")
print("HEALTHCHECK-CMD", json.dumps(hc.get("Test", [])[1:]))
EOF
grep -v '^HEALTHCHECK-CMD' "$WORK/inspect.out"
failures=$((failures + $(grep -c '^FAIL' "$WORK/inspect.out" || true)))
HEALTHCHECK_JSON=$(sed -n 's/^HEALTHCHECK-CMD //p' "$WORK/inspect.out")

# ----------------------------------------------------------- test configs --
step "fake CometAPI and configs"
port_free "$PORT" || die "port $PORT on 127.0.0.1 is in use (set SMOKE_PORT)"
python3 scripts/fake_cometapi.py --key "$LOW_KEY=15" --key "$OK_KEY=100" \
    --port-file "$WORK/api.port" 2>"$WORK/api.log" &
PIDS+=($!)
for _ in $(seq 50); do [ -s "$WORK/api.port" ] && break; sleep 0.1; done
[ -s "$WORK/api.port" ] || { cat "$WORK/api.log"; die "fake CometAPI did not start"; }
API_PORT=$(cat "$WORK/api.port")
pass "fake CometAPI on http://127.0.0.1:$API_PORT/user/quota"

# One config for check and run: interval 1s, state_path and http_listen left
# at their defaults (state in the working directory /data; the listen address
# comes from $BALANCE_BOT_HTTP_LISTEN).
cat >"$WORK/rules.toml" <<EOF
[bot]
interval = "1s"
request_timeout = "5s"

[[accounts]]
name = "smoke"
key = "\${COMETAPI_QUERY_KEY}"
url = "http://127.0.0.1:$API_PORT/user/quota"

[[rules]]
name = "account-low"
target = "total"
below = 20.0
recover_above = 25.0
severity = "warning"

[[rules]]
name = "account-empty"
target = "total"
below = 5.0
severity = "critical"
EOF
chmod 0644 "$WORK/rules.toml"
CONFIG=(-v "$WORK/rules.toml:/config/rules.toml:ro")
new_container "$IMAGE" || die "buildah from $IMAGE failed"

in_image() {  # in_image OUT_FILE [buildah run options...] -- CMD...; returns CMD's exit code
    local out=$1
    shift
    "${BUILDAH[@]}" run "${RUN[@]}" "$@" >"$out" 2>"$out.err"
}

# --------------------------------------------------------- (1) validate --
step "(1) balance-bot validate (rules.example.toml)"
rc=0
in_image "$WORK/validate.out" -v "$ROOT/rules.example.toml:/config/rules.toml:ro" \
    --env COMETAPI_QUERY_KEY=dummy-query-key --env TELEGRAM_BOT_TOKEN=123456:dummy-token \
    --env SLACK_BOT_TOKEN=xoxb-dummy --env SLACK_APP_TOKEN=xapp-dummy \
    "$CTR" -- balance-bot validate || rc=$?
if [ "$rc" = 0 ] && grep -q '^/config/rules.toml: OK' "$WORK/validate.out"; then
    pass "validate: exit 0, $(head -n1 "$WORK/validate.out")"
else
    fail "validate: exit $rc (want 0)"
    cat "$WORK/validate.out" "$WORK/validate.out.err"
fi

# ------------------------------------------------------------ (2) check --
step "(2) balance-bot check against the fake CometAPI"
check_case() {  # check_case KEY WANT_RC WANT_PREFIX
    local rc=0 out=$WORK/check-$2.out
    in_image "$out" "${CONFIG[@]}" --env COMETAPI_QUERY_KEY="$1" "$CTR" -- balance-bot check \
        || rc=$?
    if [ "$rc" = "$2" ] && head -n1 "$out" | grep -q "^$3"; then
        pass "check: exit $rc, $(head -n1 "$out")"
    else
        fail "check: exit $rc (want $2), first line $(head -n1 "$out") (want '$3 ...')"
        cat "$out" "$out.err"
    fi
}
check_case "$LOW_KEY" 1 "BALANCE WARNING"
check_case "$OK_KEY" 0 "BALANCE OK"

# -------------------------------------------------------------- (3) run --
step "(3) balance-bot run: /healthz, /metrics, HEALTHCHECK, SIGTERM"
port_free "$PORT" || die "port $PORT on 127.0.0.1 is in use (set SMOKE_PORT)"
# For the read-only root file system check below: the container's root file
# system on the host, and a time stamp to compare its files with.
ROOTFS=$("${BUILDAH[@]}" mount "$CTR") || die "buildah mount $CTR failed"
touch "$WORK/run.start"
"${BUILDAH[@]}" run "${RUN[@]}" "${CONFIG[@]}" --env COMETAPI_QUERY_KEY="$OK_KEY" \
    --env BALANCE_BOT_HTTP_LISTEN="127.0.0.1:$PORT" "$CTR" -- balance-bot run \
    >"$WORK/run.out" 2>"$WORK/run.log" &
RUN_PID=$!
PIDS+=("$RUN_PID")

health=""
for _ in $(seq 60); do
    health=$(http_get "http://127.0.0.1:$PORT/healthz")
    [ "${health%% *}" = 200 ] && break
    kill -0 "$RUN_PID" 2>/dev/null || break
    sleep 0.5
done
if [ "${health%% *}" = 200 ]; then
    pass "run: /healthz 200 ${health#* }"
else
    fail "run: /healthz answered '${health}' (want 200)"
    cat "$WORK/run.log"
fi

metrics=$(http_get "http://127.0.0.1:$PORT/metrics")
if [ "${metrics%% *}" = 200 ] && grep -q '^balance_bot_balance{account="smoke",currency="USD",provider="cometapi"} 100' <<<"$metrics"; then
    pass "run: /metrics $(grep '^balance_bot_balance{' <<<"$metrics")"
else
    fail "run: /metrics has no balance_bot_balance{account=\"smoke\",...} 100"
    head -c 2000 <<<"$metrics"
fi

# The image's own HEALTHCHECK command, run in the image (no curl there).
if [ -n "$HEALTHCHECK_JSON" ] && [ "$HEALTHCHECK_JSON" != "[]" ]; then
    mapfile -t hc_cmd < <(python3 -c 'import json,sys; print("\n".join(json.loads(sys.argv[1])))' \
        "$HEALTHCHECK_JSON")
    rc=0
    in_image "$WORK/hc.out" --env BALANCE_BOT_HTTP_LISTEN="127.0.0.1:$PORT" "$CTR" -- \
        "${hc_cmd[@]}" || rc=$?
    if [ "$rc" = 0 ]; then
        pass "HEALTHCHECK command in the image: exit 0"
    else
        fail "HEALTHCHECK command in the image: exit $rc"
        cat "$WORK/hc.out" "$WORK/hc.out.err"
    fi
fi

# chroot isolation has no PID namespace: the bot is a descendant of
# `buildah run` on the host. Signal it as `docker stop` signals PID 1.
descendants() {
    local child
    for child in $(pgrep -P "$1"); do
        echo "$child"
        descendants "$child"
    done
}
# The deepest match is the Python process itself: buildah-chroot-exec, its
# parent, also shows "balance-bot run" in its command line but does not
# forward signals.
for pid in $(descendants "$RUN_PID"); do
    if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q '^[^ ]*python[0-9.]* .*balance-bot run'; then
        BOT_PID=$pid
    fi
done
if [ -z "$BOT_PID" ]; then
    fail "run: no 'balance-bot run' process under buildah run (pid $RUN_PID)"
else
    kill -TERM "$BOT_PID"
    stop_start=$SECONDS
    for _ in $(seq 100); do kill -0 "$RUN_PID" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$RUN_PID" 2>/dev/null; then
        fail "run: still running 20s after SIGTERM"
    else
        rc=0
        wait "$RUN_PID" || rc=$?
        if [ "$rc" = 0 ]; then
            pass "run: SIGTERM -> exit 0 after $((SECONDS - stop_start))s"
        else
            fail "run: SIGTERM -> exit $rc (want 0)"
            tail -n 20 "$WORK/run.log"
        fi
    fi
    BOT_PID=""
fi

# Kubernetes runs it with readOnlyRootFilesystem: state goes to /data (a
# volume, kept by buildah outside the root file system), nothing else is
# written (no bytecode, no temp files, no home directory).
written=$(find "$ROOTFS" -xdev -newer "$WORK/run.start" ! -type d ! -path "$ROOTFS/data/*" \
    -printf '/%P\n' | head -n 20)
if [ -z "$written" ]; then
    pass "run: wrote nothing outside /data (read-only root file system is fine)"
else
    fail "run: wrote outside /data: $(tr '\n' ' ' <<<"$written")"
fi

if grep -qF -e "$LOW_KEY" -e "$OK_KEY" "$WORK"/*.out "$WORK"/*.err "$WORK/run.log" 2>/dev/null; then
    fail "a CometAPI key appears in the bot's output"
else
    pass "no CometAPI key in any output or log line"
fi

# --------------------------------------------------------- (4) non-root --
step "(4) non-root user and /data ownership"
rc=0
in_image "$WORK/id.out" "$CTR" -- sh -c 'id -u; stat -c %u /data/balance-bot.db' || rc=$?
uid=$(sed -n 1p "$WORK/id.out")
owner=$(sed -n 2p "$WORK/id.out")
if [ "$rc" = 0 ] && [ -n "$uid" ] && [ "$uid" != 0 ]; then
    pass "id -u in the image: $uid"
else
    fail "id -u in the image: '$uid' (exit $rc; want a non-zero UID)"
    cat "$WORK/id.out.err"
fi
if [ -n "$owner" ] && [ "$owner" = "$uid" ]; then
    pass "/data/balance-bot.db is owned by UID $owner"
else
    fail "/data/balance-bot.db owner '$owner' (want $uid)"
fi

# ---------------------------------------------------------------- result --
echo
if [ "$failures" = 0 ]; then
    echo "RESULT: PASS (container smoke test, $(elapsed), image $IMAGE $size)"
else
    echo "RESULT: FAIL ($failures failed checks, $(elapsed))"
    exit 1
fi
