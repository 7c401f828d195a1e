"""Secrets sealed at rest: the key ring (where the keys live) and sealing / opening one value.

A sealed value is the text ``v1:<key id>:<Fernet token>``. Fernet is AES-128-CBC with an
HMAC-SHA256 over it (authenticated: a damaged value or a wrong key is an error, never garbage).
The key id (8 hex digits of SHA-256 of the key) says which key sealed a value, so a reader asks
for exactly that key, `calsync keys status` counts values per key without opening them, and an
error names the key that is missing.

Where the keys come from, first match wins:

1. ``CALSYNC_SECRET_KEY``: one or more Fernet keys, comma-separated; the first seals, all open.
2. ``CALSYNC_SECRET_KEY_FILE``: a key file at that path.
3. A SQLite database file: the key file ``<database>.key`` beside it.
4. Any other database (PostgreSQL): ``keys/<host>-<port>-<database>.key`` in the user data
   directory: one file a database, so rotating one database's key never retires another's.
   Processes on several hosts share one database: give them all the same key (the variable, or
   the same file through CALSYNC_SECRET_KEY_FILE).

A key file holds one key a line (the first seals; ``#`` starts a comment). It is created on first
use with mode 0600 and refused when group or others may read it. Processes re-read it when it
changes (a stat per use), so `calsync keys rotate` can put a new key first while services run.

No SQL here: the store (accounts, channels, store/keys.py) calls this module; it calls nothing
of calsync's.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

FORMAT = "v1"
ENV_KEYS = "CALSYNC_SECRET_KEY"
ENV_KEY_FILE = "CALSYNC_SECRET_KEY_FILE"
KEY_FILE_SUFFIX = ".key"
KEY_DIR = "keys"


class SecretKeyError(Exception):
    """A sealed value cannot be opened or sealed; the message names what is missing and where
    calsync looked. Nothing is written when this is raised."""


class SecretKeyMissing(SecretKeyError):
    """No key at all: CALSYNC_SECRET_KEY unset and no key file (or one that may not be made)."""


class SecretKeyWrong(SecretKeyError):
    """The key that sealed a value is not among the keys given, or the value does not open."""


class KeyFileUnsafe(SecretKeyError):
    """The key file is readable by group or others, or is not a key file."""


def key_id(key: bytes | str) -> str:
    """8 hex digits naming a key without revealing it."""
    raw = key.encode() if isinstance(key, str) else key
    return hashlib.sha256(raw.strip()).hexdigest()[:8]


def new_key() -> str:
    return Fernet.generate_key().decode()


def sealed_key_id(value: str) -> str | None:
    """The key id a sealed value names, or None when the value is not sealed (plain text)."""
    parts = value.split(":", 2)
    if len(parts) == 3 and parts[0] == FORMAT and len(parts[1]) == 8:
        return parts[1]
    return None


def is_sealed(value: str | None) -> bool:
    return value is not None and sealed_key_id(value) is not None


@dataclass(frozen=True)
class Keyring:
    """The keys one database is sealed under; `keys[0]` seals. `source` says where they came from
    (for messages: the env variable's name or the key file's path, never a key)."""

    keys: tuple[str, ...]
    source: str
    path: Path | None = None  # the key file, when the keys come from one
    _by_id: dict[str, Fernet] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.keys:
            raise SecretKeyMissing(f"{self.source} holds no key")
        by_id: dict[str, Fernet] = {}
        for key in self.keys:
            try:
                by_id[key_id(key)] = Fernet(key.encode())
            except (ValueError, TypeError) as exc:
                raise KeyFileUnsafe(
                    f"{self.source} holds something that is not a Fernet key (32 url-safe base64 bytes)"
                ) from exc
        object.__setattr__(self, "_by_id", by_id)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(key_id(k) for k in self.keys)

    @property
    def current_id(self) -> str:
        return key_id(self.keys[0])

    def seal(self, plain: str) -> str:
        token = self._by_id[self.current_id].encrypt(plain.encode()).decode()
        return f"{FORMAT}:{self.current_id}:{token}"

    def open(self, sealed: str, what: str) -> str:
        """The plain text of `sealed`; `what` names the value for the error (e.g. "account 3f.. credentials")."""
        kid = sealed_key_id(sealed)
        if kid is None:
            raise SecretKeyWrong(f"{what} is not a sealed value (expected {FORMAT}:<key id>:<token>)")
        fernet = self._by_id.get(kid)
        if fernet is None:
            raise SecretKeyWrong(
                f"{what} is sealed under key {kid}, which is not in {self.source} "
                f"(it holds {', '.join(self.ids)}); restore that key (see `calsync keys status`)"
            )
        try:
            return fernet.decrypt(sealed.split(":", 2)[2].encode()).decode()
        except InvalidToken as exc:
            raise SecretKeyWrong(
                f"{what} does not open under key {kid} from {self.source}: the value is damaged"
            ) from exc

    def reseal(self, sealed: str, what: str) -> str:
        """`sealed` under the current key (the payload and its timestamp kept), or itself if it is already."""
        kid = sealed_key_id(sealed)
        if kid == self.current_id:
            return sealed
        self.open(sealed, what)  # the clear error when its key is missing
        assert kid is not None
        rotated = MultiFernet([self._by_id[self.current_id], self._by_id[kid]]).rotate(sealed.split(":", 2)[2])
        return f"{FORMAT}:{self.current_id}:{rotated.decode()}"


# --- where the keys are ----------------------------------------------------------------------


def key_file_for(database_file: str | None, server: str | None = None) -> Path:
    """The key file of a database: CALSYNC_SECRET_KEY_FILE, else beside a SQLite file, else one per
    server database (`server` names it: host, port, database) in the user data directory."""
    named = os.environ.get(ENV_KEY_FILE, "").strip()
    if named:
        return Path(named).expanduser()
    if database_file:
        return Path(database_file + KEY_FILE_SUFFIX)
    from platformdirs import user_data_dir

    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", server or "database").strip("._") or "database"
    return Path(user_data_dir("calsync")) / KEY_DIR / f"{name}{KEY_FILE_SUFFIX}"


def keys_from_env() -> tuple[str, ...] | None:
    raw = os.environ.get(ENV_KEYS, "")
    keys = tuple(k.strip() for k in raw.split(",") if k.strip())
    return keys or None


_lock = threading.Lock()
_cache: dict[object, tuple[object, Keyring]] = {}
_memory: dict[str, Keyring] = {}  # in-memory databases: a key for the process's lifetime


def load(
    database_file: str | None, *, server: str | None = None, in_memory: bool = False, create: bool = False
) -> Keyring:
    """The key ring for a database (see the module docstring for the order). With `create`, a
    missing key file is made (a new key, mode 0600); without, a missing key is SecretKeyMissing."""
    env = keys_from_env()
    if env is not None:
        cached = _cache.get(ENV_KEYS)
        if cached is not None and cached[0] == env:
            return cached[1]
        keyring = Keyring(env, ENV_KEYS)
        _cache[ENV_KEYS] = (env, keyring)
        return keyring
    if in_memory and not os.environ.get(ENV_KEY_FILE, "").strip():
        with _lock:
            return _memory.setdefault("memory", Keyring((new_key(),), "the in-memory database's key"))
    path = key_file_for(database_file, server)
    with _lock:
        try:
            stat = path.stat()
        except FileNotFoundError:
            if not create:
                raise SecretKeyMissing(
                    f"no secret key: {ENV_KEYS} is not set and there is no key file at {path}"
                ) from None
            _create_key_file(path)
            stat = path.stat()
        signature = (stat.st_ino, stat.st_mtime_ns, stat.st_size, stat.st_mode)
        cached = _cache.get(path)
        if cached is not None and cached[0] == signature:
            return cached[1]
        keyring = Keyring(read_key_file(path), f"key file {path}", path)
        _cache[path] = (signature, keyring)
        return keyring


def read_key_file(path: Path) -> tuple[str, ...]:
    if os.name == "posix":
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise KeyFileUnsafe(
                f"key file {path} may be read by group or others (mode {mode:03o}); run `chmod 600 {path}`"
            )
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileUnsafe(f"cannot read key file {path}: {exc}") from exc
    return tuple(line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))


def write_key_file(path: Path, keys: list[str]) -> None:
    """Replace the key file in one step (a reader sees the old file or the new one), mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    header = "# calsync secret keys: the first seals, all open. Back this file up; never share it.\n"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(header + "".join(f"{k}\n" for k in keys))
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)


class RotationBusy(SecretKeyError):
    """Another process is changing this key file (a rotation or retirement runs there)."""


@contextmanager
def changing(path: Path) -> Iterator[None]:
    """Held while a process rewrites a key file's list of keys (`<key file>.lock`, an exclusive
    flock): two rotations at once would each drop the key the other one seals with."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        if os.name == "posix":
            import fcntl

            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RotationBusy(
                    f"another process is rotating the keys in {path}; try again when it is done"
                ) from None
        yield
    finally:
        os.close(fd)


def _create_key_file(path: Path) -> None:
    """A new key file, unless another process made one first (O_EXCL: both end up with the same key)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.new")
    write_key_file(temporary, [new_key()])
    try:
        os.link(temporary, path)  # fails if the file exists: the first creator wins
    except FileExistsError:
        pass
    except OSError:  # a file system without hard links: O_EXCL decides instead
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w", encoding="ascii") as out:
                out.write(temporary.read_text(encoding="ascii"))
    finally:
        temporary.unlink(missing_ok=True)
