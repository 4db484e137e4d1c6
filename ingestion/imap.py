"""Email from an IMAP mailbox (``type = "imap"`` in sources.toml).

The cursor is per folder: ``{folder: {"uidvalidity": n, "last_uid": n}}``. Each sync asks for
``UID SEARCH UID last_uid+1:*`` (which always answers with the highest UID, even when nothing is
new, so UIDs are filtered ``> last_uid``) and fetches the new messages ``batch_size`` at a time
with ``BODY.PEEK[]`` on a read-only selected folder, so nothing is marked read. Messages are
stored by normalised Message-ID, never by UID: when the server renumbers a folder (a new
UIDVALIDITY) the folder is read again and the upsert adds nothing already stored.
"""

from __future__ import annotations

import logging
import re
import ssl as ssl_module
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError

from ingestion.base import Cursor, RawMessage
from ingestion.errors import FatalError, RetryableError, SourceError
from ingestion.mail import parse_mail, to_raw_message

log = logging.getLogger(__name__)

PARTIAL_BODY = b"BODY[]<0>"
BYTES_REPR = re.compile(r"b(['\"])(.*)\1", re.DOTALL)
# Login refusals that are the server's passing trouble, not wrong credentials (RFC 5530 codes).
TEMPORARY_LOGIN_CODES = ("[UNAVAILABLE]", "[LIMIT]", "[INUSE]", "[SERVERBUG]")
# TLS handshakes that fail because the port does not speak TLS: a setting to fix, not a blip.
TLS_MISMATCH = ("WRONG_VERSION_NUMBER", "UNKNOWN_PROTOCOL", "RECORD_LAYER_FAILURE")


class ImapSource:
    """Pulls new mail from the ``folders`` of one IMAP account, without marking it read.

    Log in with ``password`` or an OAuth2 access token (``oauth2_token``, XOAUTH2). Messages
    larger than ``max_message_bytes`` are fetched only up to that size and flagged
    ``truncated`` in their metadata. One sync reads at most ``max_messages_per_sync`` messages
    (a large mailbox's first sync is spread over several runs, each committed on its own).
    """

    kind = "email"

    def __init__(
        self,
        name: str,
        host: str,
        username: str,
        password: str | None = None,
        oauth2_token: str | None = None,
        port: int = 993,
        ssl: bool = True,
        folders: Sequence[str] = ("INBOX",),
        interval_seconds: int = 60,
        batch_size: int = 500,
        max_message_bytes: int = 10_000_000,
        max_messages_per_sync: int = 5000,
        timeout: float = 30,
    ) -> None:
        if (password is None) == (oauth2_token is None):
            raise ValueError("give exactly one of password (password_env) or oauth2_token")
        if (
            isinstance(folders, str)
            or not folders
            or not all(isinstance(f, str) and f for f in folders)
        ):
            raise ValueError(f"folders = {folders!r}: give a list of folder names")
        if not 0 < int(port) < 65536:
            raise ValueError(f"port = {port!r}: use a TCP port (993 for IMAPS, 143 for IMAP)")
        for option, value in (
            ("batch_size", batch_size),
            ("max_message_bytes", max_message_bytes),
            ("max_messages_per_sync", max_messages_per_sync),
            ("timeout", timeout),
        ):
            if value <= 0:
                raise ValueError(f"{option} = {value!r}: must be positive")
        self.name = name
        self.host = host
        self.username = username
        self.password = password
        self.oauth2_token = oauth2_token
        self.port = int(port)
        self.ssl = ssl
        self.folders = tuple(folders)
        self.interval_seconds = interval_seconds
        self.batch_size = batch_size
        self.max_message_bytes = max_message_bytes
        self.max_messages_per_sync = max_messages_per_sync
        self.timeout = timeout

    def __repr__(self) -> str:  # never show the secrets
        return f"ImapSource(name={self.name!r}, host={self.host!r}, username={self.username!r})"

    def fetch(self, cursor: Cursor) -> tuple[list[RawMessage], Cursor]:
        """New messages of every folder since ``cursor``, and the cursor after them."""
        state: dict[str, Any] = {k: dict(v) for k, v in (cursor or {}).items()}
        messages: list[RawMessage] = []
        try:
            client = self._connect()
            try:
                for folder in self.folders:
                    room = self.max_messages_per_sync - len(messages)
                    if room <= 0:
                        break
                    messages += self._fetch_folder(client, folder, state, room)
            finally:
                _logout_quietly(client)
        except (OSError, EOFError, IMAPClientError) as exc:
            raise self._translate(exc) from exc
        return messages, state

    def _connect(self) -> IMAPClient:
        client = IMAPClient(self.host, port=self.port, ssl=self.ssl, timeout=self.timeout)
        client.normalise_times = False  # keep INTERNALDATE's zone
        try:
            if self.oauth2_token is not None:
                client.oauth2_login(self.username, self.oauth2_token)
            else:
                client.login(self.username, self.password)
        except Exception:
            _logout_quietly(client)
            raise
        return client

    def _fetch_folder(
        self, client: IMAPClient, folder: str, state: dict[str, Any], limit: int
    ) -> list[RawMessage]:
        try:
            selected = client.select_folder(folder, readonly=True)
        except IMAPClientAbortError:
            raise
        except IMAPClientError as exc:
            raise FatalError(
                f"IMAP source {self.name!r}: cannot open folder {folder!r} on {self.host} "
                f"({_server_text(exc)}): check the folders option"
            ) from exc
        uidvalidity = int(selected[b"UIDVALIDITY"])
        saved = state.get(folder) or {}
        last_uid = int(saved.get("last_uid", 0))
        if saved and saved.get("uidvalidity") != uidvalidity:
            log.info(
                "source %r: folder %r has a new UIDVALIDITY (%s -> %s); reading it again",
                self.name,
                folder,
                saved.get("uidvalidity"),
                uidvalidity,
            )
            last_uid = 0
        uids = sorted(u for u in client.search(["UID", f"{last_uid + 1}:*"]) if u > last_uid)
        uids = uids[:limit]
        messages: list[RawMessage] = []
        for start in range(0, len(uids), self.batch_size):
            batch = uids[start : start + self.batch_size]
            messages += self._fetch_batch(client, folder, uidvalidity, batch)
        state[folder] = {"uidvalidity": uidvalidity, "last_uid": uids[-1] if uids else last_uid}
        return messages

    def _fetch_batch(
        self, client: IMAPClient, folder: str, uidvalidity: int, uids: list[int]
    ) -> list[RawMessage]:
        """One FETCH of ``uids``: at most ``max_message_bytes`` of each, never marked read."""
        items = ["INTERNALDATE", "RFC822.SIZE", f"BODY.PEEK[]<0.{self.max_message_bytes}>"]
        response = client.fetch(uids, items)
        messages = []
        for uid in uids:
            data = response.get(uid)
            if data is None:
                continue  # expunged since the search
            raw = data.get(PARTIAL_BODY, data.get(b"BODY[]")) or b""
            size = int(data.get(b"RFC822.SIZE", len(raw)))
            parsed = parse_mail(raw)
            received = data.get(b"INTERNALDATE")
            if not isinstance(received, datetime):
                received = parsed.received or parsed.date or datetime.now(UTC)
            elif received.tzinfo is None:  # servers send a zone; be safe if one does not
                received = received.replace(tzinfo=UTC)
            metadata = {
                "folder": folder,
                "uid": uid,
                "uidvalidity": uidvalidity,
                "size": size,
                "truncated": size > len(raw),
            }
            messages.append(to_raw_message(parsed, raw, self.name, received, metadata))
        return messages

    def _translate(self, exc: Exception) -> SourceError:
        """The runner's view of a failure: retry later, or stop until someone fixes it."""
        where = f"IMAP source {self.name!r} ({self.host}:{self.port})"
        if isinstance(exc, LoginError):
            detail = _server_text(exc)
            if any(code in detail for code in TEMPORARY_LOGIN_CODES):
                return RetryableError(f"{where}: server refused login for now ({detail})")
            how = "OAuth2 token (it may have expired)" if self.oauth2_token else "password"
            return FatalError(
                f"{where}: login as {self.username!r} failed ({detail}): check the username "
                f"and {how}"
            )
        if isinstance(exc, ssl_module.SSLCertVerificationError):
            return FatalError(f"{where}: TLS certificate not trusted ({exc}): check the host")
        if isinstance(exc, ssl_module.SSLError) and exc.reason in TLS_MISMATCH:
            return FatalError(
                f"{where}: the server does not speak TLS on this port ({exc.reason}): use "
                f"port 993 with ssl = true, or port 143 with ssl = false"
            )
        if isinstance(exc, TimeoutError):
            return RetryableError(f"{where}: no answer within {self.timeout}s")
        if isinstance(exc, ConnectionRefusedError):
            return RetryableError(f"{where}: connection refused: is the server up, the port right?")
        if isinstance(exc, (OSError, IMAPClientAbortError, EOFError)):
            return RetryableError(f"{where}: connection lost ({type(exc).__name__}: {exc})")
        return FatalError(f"{where}: server refused a command ({_server_text(exc)})")


def _server_text(exc: Exception) -> str:
    """The server's words in an imapclient error (which wraps them as ``"b'...'"``)."""
    text = str(exc)
    quoted = BYTES_REPR.fullmatch(text)
    return quoted.group(2) if quoted else text


def _logout_quietly(client: IMAPClient) -> None:
    """Log out, or just drop the connection when the server is already gone."""
    try:
        client.logout()
    except Exception:
        try:
            client.shutdown()
        except Exception:
            log.debug("IMAP connection already closed")
