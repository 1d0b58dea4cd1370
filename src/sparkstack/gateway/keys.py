"""API keys: created once (the secret is shown then and never stored), kept as
SHA-256 hashes in a 0600 JSON file, revoked by id or name. A key has a scope
(``inference`` or ``admin``), optional model allow-list, and optional limits.

Keys are 32 random bytes, so a fast hash is enough: there is nothing to
brute-force. The gateway re-reads the file when it changes, so a revoke takes
effect within a second without a restart.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import time
from pathlib import Path

from pydantic import BaseModel, Field

from sparkstack.errors import SparkstackError

PREFIX = "sk-ss-"
log = logging.getLogger("sparkstack.gateway")


class KeyRecord(BaseModel):
    id: str
    name: str
    hash: str
    created: float
    admin: bool = False
    models: list[str] | None = None
    """Model names (or aliases) this key may use; None: all."""
    rate_per_minute: int | None = None
    max_concurrency: int | None = None
    priority: int = 0
    """Its requests' place in a model's queue: higher first (model_queue.py)."""
    revoked: bool = False

    def allows(self, model: str) -> bool:
        return self.models is None or model in self.models


class KeyFile(BaseModel):
    keys: list[KeyRecord] = Field(default_factory=list)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> KeyFile:
        try:
            return KeyFile.model_validate_json(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return KeyFile()
        except (OSError, ValueError) as exc:
            raise SparkstackError(
                f"{self.path} is damaged ({exc}); fix or remove it and create keys again"
            ) from exc

    def save(self, data: KeyFile) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(data.model_dump_json(indent=2))
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)

    def create(
        self,
        name: str,
        *,
        admin: bool = False,
        models: list[str] | None = None,
        rate_per_minute: int | None = None,
        max_concurrency: int | None = None,
        priority: int = 0,
    ) -> tuple[KeyRecord, str]:
        data = self.load()
        if any(k.name == name and not k.revoked for k in data.keys):
            raise SparkstackError(f"a key named {name!r} exists; pick another name or revoke it")
        key_id = secrets.token_hex(4)
        secret = f"{PREFIX}{key_id}-{secrets.token_urlsafe(32)}"
        record = KeyRecord(
            id=key_id, name=name, hash=hash_key(secret), created=time.time(), admin=admin,
            models=models, rate_per_minute=rate_per_minute, max_concurrency=max_concurrency,
            priority=priority,
        )  # fmt: skip
        data.keys.append(record)
        self.save(data)
        return record, secret

    def revoke(self, id_or_name: str) -> KeyRecord:
        data = self.load()
        for record in data.keys:
            if id_or_name in (record.id, record.name) and not record.revoked:
                record.revoked = True
                self.save(data)
                return record
        raise SparkstackError(
            f"no active key with id or name {id_or_name!r}; see `sparkstack keys list`"
        )


class KeyIndex:
    """The gateway's view of the key file: hash -> record, refreshed on change.

    Fails closed: once the gateway needs keys (it started with keys, or listens
    beyond loopback: ``required``), a key file that disappears, is emptied or is
    damaged refuses every request (``problem`` says why) until a valid file is back.
    """

    def __init__(
        self, store: KeyStore, check_interval: float = 1.0, required: bool = False
    ) -> None:
        self.store = store
        self.check_interval = check_interval
        self._by_hash: dict[str, KeyRecord] = {}
        self._known: dict[str, KeyRecord] = {}
        """Keys as sent -> their record, for keys that matched (saves a SHA-256 per
        request); emptied whenever the key file is read again."""
        self._stamp: tuple[int, int, int] | None = None
        self._checked = 0.0
        self.problem: str | None = None
        """Why no key is accepted now (key file missing, empty or damaged), or None."""
        self.required = required
        self.refresh(force=True)
        self.required = required or self.active

    @property
    def active(self) -> bool:
        """True while the key file holds at least one key."""
        return bool(self._by_hash)

    @property
    def enabled(self) -> bool:
        """True when requests must carry a key."""
        return self.required or self.active

    def refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._checked < self.check_interval:
            return
        self._checked = now
        try:
            stat = self.store.path.stat()
            stamp: tuple[int, int, int] | None = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        except FileNotFoundError:
            stamp = None
        except OSError as exc:
            self._fail(f"the key file {self.store.path} cannot be read ({exc})")
            return
        if stamp == self._stamp and not force:
            return
        self._stamp = stamp
        try:
            records = [] if stamp is None else self.store.load().keys
        except SparkstackError as exc:
            log.error("%s", exc)
            self._fail(f"the key file {self.store.path} is damaged")
            return
        self._by_hash = {record.hash: record for record in records}
        self._known = {}
        if stamp is None:
            self._set_problem(f"the key file {self.store.path} is missing")
        elif not records:
            self._set_problem(f"the key file {self.store.path} holds no keys")
        else:
            self._set_problem(None)

    def _fail(self, problem: str) -> None:
        self._by_hash = {}
        self._known = {}
        self._set_problem(problem)

    def _set_problem(self, problem: str | None) -> None:
        problem = problem if self.required else None
        if problem != self.problem:
            if problem:
                log.error("refusing every request: %s; restore it (`sparkstack keys create`)",
                          problem)  # fmt: skip
            else:
                log.warning("the key file is valid again: requests are accepted")
        self.problem = problem

    def lookup(self, key: str, refreshed: bool = False) -> KeyRecord | None:
        """The record of a key as sent (``refreshed``: the caller just called ``refresh``)."""
        if not refreshed:
            self.refresh()
        record = self._known.get(key)
        if record is None:
            record = self._by_hash.get(hash_key(key))
            if record is not None and len(self._known) < 4096:
                self._known[key] = record
        return record
