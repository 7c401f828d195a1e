"""Web login for people: passwords, one-time login links and server-side sessions.

Passwords are people's choice, so guessable: they get a slow, salted hash (Argon2id, argon2-cffi's
PasswordHasher defaults). Session ids and login tokens are `secrets.token_urlsafe(32)` (256 random
bits): like API keys (store/users.py), one SHA-256 is enough, and only that digest is stored, so a
copy of the database opens no session. A login token is good once, for LOGIN_LINK_TTL; a session
lasts SESSION_TTL. Each session carries its own CSRF token, which the page sends back in a header
on every state-changing request (service/auth.py)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, delete, select, update

from calsync.model import utcnow
from calsync.store.common import NotFound
from calsync.store.schema import login_tokens, sessions, users

LOGIN_LINK_TTL = timedelta(minutes=15)
SESSION_TTL = timedelta(days=7)

_hasher = PasswordHasher()
# checked against when a user name is unknown or has no password, so both take as long as a wrong password
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class Session:
    """A live session: whose it is and the CSRF token its state-changing requests must carry."""

    user_id: str
    csrf_token: str
    expires_at: datetime


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# --- passwords -----------------------------------------------------------------------------------


def set_password(conn: Connection, user_id: str, password: str) -> None:
    """Store the password's Argon2id hash (never the password); NotFound for no such user. The user's
    sessions end with the old password: a new password is how someone locks out a stolen login."""
    done = conn.execute(update(users).where(users.c.id == user_id).values(password_hash=_hasher.hash(password)))
    if done.rowcount != 1:
        raise NotFound(f"no user {user_id!r}")
    conn.execute(delete(sessions).where(sessions.c.user_id == user_id))


def check_password(conn: Connection, name: str, password: str) -> str | None:
    """The id of the user with this name and password; None otherwise, alike for an unknown name, a
    user without a password and a wrong password (each costs one Argon2 verification)."""
    row = conn.execute(select(users.c.id, users.c.password_hash).where(users.c.name == name)).first()
    stored = row.password_hash if row is not None and row.password_hash else None
    try:
        _hasher.verify(stored or _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if row is None or stored is None:
        return None
    if _hasher.check_needs_rehash(stored):
        conn.execute(update(users).where(users.c.id == row.id).values(password_hash=_hasher.hash(password)))
    return str(row.id)


# --- one-time login links ------------------------------------------------------------------------


def create_login_token(conn: Connection, user_id: str, now: datetime | None = None) -> str:
    """A token for one login within LOGIN_LINK_TTL; only its digest is stored."""
    if conn.execute(select(users.c.id).where(users.c.id == user_id)).first() is None:
        raise NotFound(f"no user {user_id!r}")
    now = now or utcnow()
    token = secrets.token_urlsafe(32)
    conn.execute(
        login_tokens.insert().values(
            token_hash=_digest(token), user_id=user_id, created_at=now, expires_at=now + LOGIN_LINK_TTL
        )
    )
    return token


def redeem_login_token(conn: Connection, token: str, now: datetime | None = None) -> str | None:
    """The user a fresh, unused token logs in, marking it used (one UPDATE, so two requests racing
    with one token cannot both win); None for an unknown, used or expired token."""
    now = now or utcnow()
    digest = _digest(token)
    user_id = conn.execute(
        select(login_tokens.c.user_id).where(
            login_tokens.c.token_hash == digest, login_tokens.c.used_at.is_(None), login_tokens.c.expires_at > now
        )
    ).scalar()
    if user_id is None:
        return None
    done = conn.execute(
        update(login_tokens)
        .where(login_tokens.c.token_hash == digest, login_tokens.c.used_at.is_(None))
        .values(used_at=now)
    )
    return str(user_id) if done.rowcount == 1 else None


def login_url(base: str, token: str) -> str:
    """The one-time login address of a token, on the service at `base` (service/login.py answers it)."""
    return f"{base.rstrip('/')}/login/link?{urlencode({'token': token})}"


# --- sessions ------------------------------------------------------------------------------------


def create_session(conn: Connection, user_id: str, now: datetime | None = None) -> tuple[str, Session]:
    """A new session: (the id for the cookie, never stored itself; the session)."""
    now = now or utcnow()
    session_id = secrets.token_urlsafe(32)
    session = Session(user_id, secrets.token_urlsafe(32), now + SESSION_TTL)
    conn.execute(delete(sessions).where(sessions.c.expires_at <= now))  # the expired, while we are here
    conn.execute(
        sessions.insert().values(
            id_hash=_digest(session_id),
            user_id=user_id,
            csrf_token=session.csrf_token,
            created_at=now,
            expires_at=session.expires_at,
        )
    )
    return session_id, session


def find_session(conn: Connection, session_id: str, now: datetime | None = None) -> Session | None:
    """The live session with this id; None for an unknown or expired one."""
    row = conn.execute(
        select(sessions.c.user_id, sessions.c.csrf_token, sessions.c.expires_at).where(
            sessions.c.id_hash == _digest(session_id), sessions.c.expires_at > (now or utcnow())
        )
    ).first()
    return None if row is None else Session(row.user_id, row.csrf_token, row.expires_at)


def end_session(conn: Connection, session_id: str) -> None:
    """Log out: the session is deleted, so its cookie opens nothing any more."""
    conn.execute(delete(sessions).where(sessions.c.id_hash == _digest(session_id)))
