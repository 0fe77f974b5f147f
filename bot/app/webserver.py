"""The health, metrics (and status page) server of a process, started with one
clear line when its port cannot be had."""

from __future__ import annotations

import logging

from aiohttp import web

from bot.common.logs import log_event
from bot.config import split_listen
from bot.ops.web import WebServer

logger = logging.getLogger(__name__)


class StartupError(Exception):
    """The service cannot start; the message names the setting and the remedy."""


async def open_web(listen: str, site: web.Application) -> WebServer:
    """Serve `site` on `listen` ("host:port"), or raise StartupError saying why not."""
    host, port = split_listen(listen)
    server = WebServer(site, host, port)
    try:
        await server.start()
    except OSError as exc:
        await server.stop()
        raise StartupError(
            f"bot.http_listen: cannot listen on {host}:{port}: {exc.strerror or exc}; "
            'stop what uses the port, or set http_listen to another address ("" turns '
            "health and metrics off)"
        ) from None
    log_event(
        logger,
        "http.listening",
        host=host,
        port=server.port,
        urls=f"http://{host}:{server.port}/healthz /metrics",
    )
    return server
