"""Run `python -m bot` (or `python -m fakes`) as a real process and follow its output."""

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

    def __init__(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        cwd: Path = ROOT,
        program: tuple[str, ...] = (sys.executable, "-m", "bot"),
    ) -> None:
        self.args = args
        self.program = program  # e.g. (".venv/bin/balance-bot",), as the README calls it
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.proc: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []
        self.stdout = ""
        self._changed = asyncio.Condition()
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> BotProcess:
        self.proc = await asyncio.create_subprocess_exec(
            *self.program,
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


class FakeCLI:
    """A `python -m fakes <kind>` child; its stdout lines as they come."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.lines: list[str] = []
        self.stderr = ""
        self.proc: asyncio.subprocess.Process | None = None
        self._changed = asyncio.Condition()
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> FakeCLI:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "fakes",
            self.kind,
            "--port",
            "0",
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        self._reader = asyncio.create_task(self._read())
        await self.wait_for(lambda line: line == "Ctrl-C stops it.")
        return self

    async def _read(self) -> None:
        assert self.proc and self.proc.stdout
        async for raw in self.proc.stdout:
            async with self._changed:
                self.lines.append(raw.decode().rstrip("\n"))
                self._changed.notify_all()

    async def wait_for(
        self, match: Callable[[str], bool], after: int = 0, within: float = 20
    ) -> int:
        """The index of the first line from `after` on that matches."""

        def found() -> int | None:
            return next((i for i in range(after, len(self.lines)) if match(self.lines[i])), None)

        try:
            async with asyncio.timeout(within), self._changed:
                await self._changed.wait_for(lambda: found() is not None)
        except TimeoutError:
            raise AssertionError("timed out; stdout so far:\n" + "\n".join(self.lines)) from None
        index = found()
        assert index is not None
        return index

    def exports(self) -> dict[str, str]:
        pairs = [line.strip().removeprefix("export ").split("=", 1) for line in self.lines]
        return {p[0]: p[1] for p in pairs if len(p) == 2 and p[0].isupper()}

    async def type(self, text: str) -> int:
        """Type a line; returns the index from which its answer is to be looked for."""
        assert self.proc and self.proc.stdin
        at = len(self.lines)
        self.proc.stdin.write(text.encode() + b"\n")
        await self.proc.stdin.drain()
        return at

    async def interrupt(self) -> int:
        """Ctrl-C: the exit code, stdout and stderr read to the end."""
        assert self.proc and self.proc.stderr
        self.proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(15):
            self.stderr = (await self.proc.stderr.read()).decode()
            code = await self.proc.wait()
            if self._reader:
                await self._reader
        return code

    def kill(self) -> None:
        if self.proc and self.proc.returncode is None:
            self.proc.kill()
