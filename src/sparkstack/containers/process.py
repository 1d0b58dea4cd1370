"""One engine in a container, driven through the container CLI rather than a held
CLI process: create and start detached, stream ``logs -f`` into the model's log
file, ``wait`` for its exit, read exit code and OOM kill from ``inspect``; stop is
``stop -t``, then ``kill``, then ``rm``. Same interface as ``ManagedProcess``
(name, argv, log_path, pid, returncode, start, wait, stop)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from pathlib import Path

from sparkstack.containers.command import create_argv
from sparkstack.containers.config import ContainerConfig, require_cli
from sparkstack.containers.record import record_container
from sparkstack.errors import SupervisorError

_CLI_TIMEOUT = 120.0
_PULL_TIMEOUT = 3600.0


def describe_exit(returncode: int | None) -> str:
    """Human words for an exit status; negative ones are signals."""
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with code {returncode}"


def exit_status(code: int) -> int:
    """A container's 128+N exit code is signal N, as for a native process (-N)."""
    if code > 128 and code - 128 in {s.value for s in signal.Signals}:
        return -(code - 128)
    return code


def write_files(files: dict[str, str]) -> None:
    """The engine's input files (e.g. TensorRT-LLM's options YAML), written at start."""
    for path, text in files.items():
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


class ContainerProcess:
    """``pid`` is the container's init process as the host sees it (for memory)."""

    def __init__(
        self,
        name: str,
        config: ContainerConfig,
        engine_argv: list[str],
        env: dict[str, str],
        log_path: Path,
        port: int,
        files: dict[str, str] | None = None,
        record_file: Path | None = None,
    ) -> None:
        self.config = config
        self.engine_argv = engine_argv
        self.files = dict(files or {})
        self.record_file = record_file
        self.oom_killed = False
        self.name = name
        self.env = env
        self.log_path = log_path
        self.argv = create_argv(config, engine_argv, list(env), port, list(self.files))
        self._pid: int | None = None
        self._returncode: int | None = None
        self._created = False
        self._exited: asyncio.Task[int] | None = None
        self._killing: asyncio.Task[tuple[int, str]] | None = None
        self._logs: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        return self._pid

    @property
    def returncode(self) -> int | None:
        return self._returncode

    def _cli_env(self, with_values: bool) -> dict[str, str]:
        env = {**os.environ, **self.config.cli_env}
        return {**env, **self.env} if with_values else env

    async def _cli(
        self, *args: str, limit: float = _CLI_TIMEOUT, with_values: bool = False
    ) -> tuple[int, str]:
        """Run one CLI command; (exit code, stdout + stderr)."""
        proc = await asyncio.create_subprocess_exec(
            *self.config.cli_command(*args),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=self._cli_env(with_values),
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), limit)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return 124, f"{self.config.cli} {args[0]} timed out after {limit:g}s"
        return proc.returncode or 0, out.decode(errors="replace")

    def _log(self, line: str) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a", encoding="utf-8") as log:
            log.write(line + "\n")

    async def _ensure_image(self) -> None:
        cfg = self.config
        probe = ("image", "exists", cfg.image) if cfg.cli == "podman" else (
            "image", "inspect", cfg.image)  # fmt: skip
        code, _ = await self._cli(*probe)
        if code == 0:
            return
        fix = f"check image: for {cfg.model} ({cfg.image_source}) or `{cfg.cli} pull {cfg.image}`"
        if cfg.pull == "never":
            raise SupervisorError(
                f"{cfg.model}: image {cfg.image} is not on this machine (container.pull: never); "
                f"{fix}"
            )
        self._log(f"=== sparkstack pulls {cfg.image}")
        code, out = await self._cli("pull", cfg.image, limit=_PULL_TIMEOUT)
        self._log(out.rstrip())
        if code != 0:
            raise SupervisorError(
                f"{cfg.model}: image {cfg.image} is not on this machine and `{cfg.cli} pull` "
                f"failed ({last_line(out)}); {fix}"
            )

    async def start(self) -> None:
        cfg = self.config
        require_cli(cfg)
        await self._cli("rm", "-f", cfg.name)  # a leftover of a killed run of this stack
        await self._ensure_image()
        write_files(self.files)
        self._log(f"\n=== sparkstack starts {self.name} in a container: {' '.join(self.argv)}")
        # -e NAME in argv; the values only in the CLI's environment
        code, out = await self._cli(*self.argv[1 + len(cfg.cli_args) :], with_values=True)
        if code != 0:
            self._log(out.rstrip())
            raise SupervisorError(
                f"{self.name}: `{cfg.cli} create` failed: {last_line(out)}; check the "
                f"container: settings of the stack file (full output in {self.log_path})"
            )
        self._created = True
        if self.record_file is not None:
            record_container(self.record_file, cfg)
        code, out = await self._cli("start", cfg.name)
        if code != 0:
            self._log(out.rstrip())
            await self._remove()
            raise SupervisorError(
                f"{self.name}: the container did not start: {last_line(out)}; check the "
                f"engine command and image {cfg.image}"
            )
        self._logs = await asyncio.create_subprocess_exec(
            *cfg.cli_command("logs", "-f", cfg.name),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self.log_path.open("ab", buffering=0),
            stderr=asyncio.subprocess.STDOUT,
            env=self._cli_env(False),
        )
        self._pid = await self._inspect_pid()
        self._exited = asyncio.create_task(self._watch_exit())

    async def _inspect(self) -> dict[str, object]:
        code, out = await self._cli("inspect", "--type", "container", self.config.name)
        if code != 0:
            return {}
        try:
            data = json.loads(out)
        except ValueError:
            return {}
        state = data[0].get("State", {}) if isinstance(data, list) and data else {}
        return state if isinstance(state, dict) else {}

    async def _inspect_pid(self) -> int | None:
        pid = (await self._inspect()).get("Pid")
        return pid if isinstance(pid, int) and pid > 0 else None

    async def _watch_exit(self) -> int:
        """``wait`` returns at the container's exit; then its code and OOM flag."""
        await self._cli("wait", self.config.name, limit=10**9)
        state = await self._inspect()
        code = state.get("ExitCode")
        self.oom_killed = bool(state.get("OOMKilled"))
        status = exit_status(code) if isinstance(code, int) else -signal.SIGKILL
        if self._logs is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._logs.wait(), 2.0)
        why = " (OOM-killed: the container's memory limit or the host ran out)" if (
            self.oom_killed) else ""  # fmt: skip
        self._log(f"=== container {self.config.name} {describe_exit(status)}{why}")
        self._returncode = status
        return status

    async def wait(self) -> int:
        if self._exited is None:
            raise SupervisorError(f"{self.name}: wait() before start()")
        return await asyncio.shield(self._exited)

    def kill(self) -> None:
        """Kill the container now (a hung engine): ``CLI kill`` runs in the background
        and ``_watch_exit`` sees the exit."""
        if self._created and self._exited is not None and not self._exited.done():
            loop = asyncio.get_running_loop()
            self._killing = loop.create_task(self._cli("kill", self.config.name))

    async def _remove(self) -> None:
        await self._cli("rm", "-f", self.config.name)
        if self._logs is not None and self._logs.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._logs.kill()
            await self._logs.wait()

    async def stop(self, grace: float) -> str:
        """``stop -t grace`` (SIGTERM, then SIGKILL), ``kill`` if that failed, ``rm``."""
        if not self._created:
            return "never started"
        outcome = ""
        if self._exited is not None and not self._exited.done():
            seconds = str(max(int(grace), 0))
            code, out = await self._cli("stop", "-t", seconds, self.config.name,
                                        limit=grace + 30)  # fmt: skip
            if code != 0:
                await self._cli("kill", self.config.name)
                outcome = f" (stop failed: {last_line(out)}; killed)"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._exited), 30)
        await self._remove()
        if self._exited is not None and not self._exited.done():
            self._exited.cancel()
        return describe_exit(self._returncode) + outcome
