#!/usr/bin/env python3
"""A fake CometAPI /user/quota for the container smoke test (stdlib only).

    python3 scripts/fake_cometapi.py --key low-key=15 --key ok-key=100 --port-file /tmp/port

Answers GET /user/quota?key=K (and /user/quota/?key=K) with a CometAPI-shaped
balance whose total_quota is the amount given for K, and 401 for any other
key. Listens on 127.0.0.1 (port 0 = any free port; the bound port is written
to --port-file once the server accepts connections) until SIGTERM/SIGINT.

Only the standard library, so it runs with any host python3, before or
without the project's venv. fakes/cometapi.py is the scriptable
in-process fake the test suite uses.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


def quota(total: float) -> dict[str, object]:
    return {
        "username": "smoke_user",
        "total_quota": total,
        "total_used_quota": 21.5,
        "request_count": 1221,
        "keys": [
            {"name": "balance-query", "remain_quota": 0, "used_quota": 0},
            {"name": "prod-api", "remain_quota": 50, "used_quota": 5},
            {"name": "unlimited", "remain_quota": 999999999, "used_quota": -1},
        ],
    }


def make_handler(balances: dict[str, float]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path.rstrip("/") != "/user/quota":
                self._reply(404, {"success": False, "message": "not found"})
                return
            key = parse_qs(url.query).get("key", [""])[0]
            if key not in balances:
                self._reply(401, {"success": False, "message": "invalid key"})
                return
            self._reply(200, quota(balances[key]))

        def _reply(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            # The query string carries the key: log the path only.
            path = urlsplit(self.path).path
            sys.stderr.write(f"fake-cometapi: {self.command} {path} -> {args[1]}\n")

    return Handler


def parse_key(value: str) -> tuple[str, float]:
    key, sep, amount = value.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=USD, not {value!r}")
    return key, float(amount)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--key", type=parse_key, action="append", required=True, metavar="KEY=USD")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--port-file", help="write the bound port here once listening")
    args = p.parse_args()

    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(dict(args.key)))
    server.daemon_threads = True
    port = server.server_address[1]

    def stop(signum: int, _frame: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.port_file:
        tmp = f"{args.port_file}.tmp"
        with open(tmp, "w") as f:
            f.write(f"{port}\n")
        os.replace(tmp, args.port_file)  # readers never see a half-written file
    print(f"fake-cometapi: listening on http://127.0.0.1:{port}/user/quota", file=sys.stderr)
    server.serve_forever()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
