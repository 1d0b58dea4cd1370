"""``sparkstack top``: polls a gateway's status document once a second and draws
it with rich; single keys act on the selected model. A gateway that goes away
leaves the last picture on screen under an "unreachable since" line, and the view
resumes by itself when it answers again. The first contact must succeed, so a
wrong key or a URL that is no gateway ends it with one line."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import termios
import time
import tty
from collections.abc import Iterator

import aiohttp
from rich.console import Console
from rich.live import Live

from sparkstack.errors import TelemetryError
from sparkstack.telemetry.client import StatusClient, Unreachable
from sparkstack.telemetry.document import StatusDocument
from sparkstack.telemetry.top_view import View, render

REFRESH_S = 1.0
ACTIONS = {"l": "load", "u": "unload", "s": "sleep", "w": "wake"}
UP, DOWN = ("\x1b[A", "k"), ("\x1b[B", "j")


@contextlib.contextmanager
def cbreak(fd: int) -> Iterator[None]:
    """Single keys without Enter; the terminal is restored whatever happens."""
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


class Top:
    def __init__(self, client: StatusClient, console: Console) -> None:
        self.client = client
        self.console = console
        self.view = View(url=client.url)
        self.doc: StatusDocument | None = None
        self.keys: asyncio.Queue[str] = asyncio.Queue()
        self.live: Live | None = None

    def draw(self) -> None:
        if self.live is not None:
            self.live.update(render(self.doc, self.view, self.console.width), refresh=True)

    async def refresh(self) -> None:
        try:
            self.doc = await self.client.status()
            self.view.unreachable_since = None
            self.view.problem = ""
        except Unreachable:
            if self.view.unreachable_since is None:
                self.view.unreachable_since = time.time()
            self.view.problem = "no answer"
        except TelemetryError as exc:  # a revoked key, a different server now
            self.view.problem = str(exc)
        if self.doc is not None:
            self.view.selected = min(self.view.selected, max(0, len(self.doc.models) - 1))
        self.draw()

    async def poll(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(REFRESH_S)

    async def handle_keys(self) -> None:
        while True:
            key = await self.keys.get()
            if key == "q":
                return
            models = self.doc.models if self.doc else []
            if key in UP:
                self.view.selected = max(0, self.view.selected - 1)
            elif key in DOWN:
                self.view.selected = min(len(models) - 1, self.view.selected + 1)
            elif key in ACTIONS and models:
                name = models[self.view.selected].name
                self.view.message = f"{ACTIONS[key]} {name} ..."
                self.draw()
                try:
                    self.view.message = await self.client.action(name, ACTIONS[key])
                except TelemetryError as exc:
                    self.view.message = str(exc)
                await self.refresh()
                continue
            self.draw()

    def on_stdin(self) -> None:
        data = os.read(sys.stdin.fileno(), 32).decode(errors="replace")
        if not data:
            self.keys.put_nowait("q")
        elif data.startswith("\x1b"):
            self.keys.put_nowait(data[:3])
        else:
            for char in data:
                self.keys.put_nowait(char)

    async def run(self) -> None:
        self.doc = await self.client.status()  # raises: the one-line errors
        loop = asyncio.get_running_loop()
        fd = sys.stdin.fileno()
        with cbreak(fd), Live(console=self.console, screen=True, auto_refresh=False) as live:
            self.live = live
            reading = os.isatty(fd)
            if reading:
                loop.add_reader(fd, self.on_stdin)
            poller = asyncio.create_task(self.poll())
            try:
                if reading:
                    await self.handle_keys()
                else:
                    await poller
            finally:
                if reading:
                    loop.remove_reader(fd)
                poller.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await poller


async def run_top(url: str, key: str | None) -> None:
    async with aiohttp.ClientSession() as session:
        await Top(StatusClient(url, key, session), Console()).run()
