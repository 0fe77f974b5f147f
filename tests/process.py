"""Run `python -m bot` as a real process and follow its output."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class BotProcess:
    """A `python -m bot` child; every one started is killed at test teardown
    (see the autouse fixture in conftest.py), also when the test failed."""

    running: list[BotProcess] = []  # noqa: RUF012

    def __init__(self, *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> None:
        self.args = args
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.proc: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []
        self.stdout = ""
        self._changed = asyncio.Condition()
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> BotProcess:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            *self.args,
            cwd=self.cwd,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        self._reader = asyncio.create_task(self._read())
        BotProcess.running.append(self)
        return self

    def kill(self) -> None:
        if self.proc and self.proc.returncode is None:
            self.proc.kill()

    async def _read(self) -> None:
        assert self.proc and self.proc.stderr
        async for raw in self.proc.stderr:
            async with self._changed:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[list[str]], bool], within: float = 30.0) -> None:
        """Wait until predicate(all stderr lines so far) holds."""
        try:
            async with asyncio.timeout(within), self._changed:
                await self._changed.wait_for(lambda: predicate(self.lines))
        except TimeoutError:
            raise AssertionError("timed out; stderr so far:\n" + "\n".join(self.lines)) from None

    def count(self, needle: str) -> int:
        return sum(needle in line for line in self.lines)

    async def stop(self, sig: int = signal.SIGTERM, within: float = 20.0) -> int:
        assert self.proc
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        return await self.wait(within)

    async def wait(self, within: float = 60.0) -> int:
        assert self.proc and self.proc.stdout
        async with asyncio.timeout(within):
            out = await self.proc.stdout.read()
            await self.proc.wait()
            if self._reader:
                await self._reader
        self.stdout = out.decode(errors="replace")
        return self.proc.returncode  # type: ignore[return-value]

    @property
    def stderr(self) -> str:
        return "\n".join(self.lines)

    def json_lines(self) -> list[dict]:
        return [json.loads(line) for line in self.lines if line.startswith("{")]


async def run_bot(
    *args: str, env: dict[str, str] | None = None, within: float = 60.0, cwd: Path = ROOT
) -> BotProcess:
    proc = await BotProcess(*args, env=env, cwd=cwd).start()
    await proc.wait(within)
    return proc
