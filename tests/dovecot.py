"""A throwaway Dovecot IMAP server for tests and benchmarks (Debian's ``dovecot-imapd``, 2.3).

``dovecot_server()`` starts ``dovecot -F -c CONF`` in the foreground on a free loopback port with
its own config, base_dir, passwd-file (``{PLAIN}`` passwords) and maildirs in a temporary folder,
and stops it afterwards. Run as root, Dovecot's own ``dovecot``/``dovenull`` users run its
internal and login processes and mail is stored as ``nobody`` (Dovecot refuses mail access as
root); run as anyone else, everything runs as that user. XOAUTH2 is enabled: Dovecot checks the
bearer token against the passdb as the user's password.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from imapclient import IMAPClient

DOVECOT = Path("/usr/sbin/dovecot")
USER = "family-mail"
PASSWORD = "correct horse battery"
STARTUP_SECONDS = 15

CONFIG = """\
protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
instance_name = pulse-test-{port}
log_path = {root}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login xoauth2
auth_failure_delay = 0
mail_location = maildir:~/Maildir
default_internal_user = {internal_user}
default_internal_group = {internal_group}
default_login_user = {login_user}
first_valid_uid = 1
first_valid_gid = 1
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/mail/%u
}}
"""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def normalise_crlf(raw: bytes) -> bytes:
    """IMAP wants CRLF line ends; sample files on disk have LF."""
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


class DovecotServer:
    """One Dovecot in a temporary folder: ``start``, ``kill``, ``start`` again, ``stop``."""

    def __init__(self, users: dict[str, str] | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="pulse-dovecot-"))
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.users = dict(users or {USER: PASSWORD})
        if os.geteuid() == 0:
            mail = pwd.getpwnam("nobody")
            internal, login = "dovecot", "dovenull"
            internal_group = grp.getgrgid(pwd.getpwnam("dovecot").pw_gid).gr_name
            self.root.chmod(0o755)  # Dovecot's unprivileged processes must reach the files
        else:
            mail = pwd.getpwuid(os.geteuid())
            internal = login = mail.pw_name
            internal_group = grp.getgrgid(os.getegid()).gr_name
        self.mail_uid, self.mail_gid = mail.pw_uid, mail.pw_gid
        for folder in ("run", "state", "mail"):
            (self.root / folder).mkdir()
        os.chown(self.root / "mail", self.mail_uid, self.mail_gid)
        self.config = self.root / "dovecot.conf"
        self.config.write_text(
            CONFIG.format(
                root=self.root,
                port=self.port,
                uid=self.mail_uid,
                gid=self.mail_gid,
                internal_user=internal,
                internal_group=internal_group,
                login_user=login,
            )
        )
        self._write_passwd()

    def _write_passwd(self) -> None:
        lines = "".join(f"{user}:{{PLAIN}}{password}\n" for user, password in self.users.items())
        (self.root / "passwd").write_text(lines)

    def add_user(self, user: str, password: str) -> None:
        """Add a login (Dovecot re-reads the passwd-file when it changes)."""
        self.users[user] = password
        self._write_passwd()

    @property
    def log(self) -> str:
        """Dovecot's log so far."""
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_for_log(self, text: str, limit: float = 10.0) -> str:
        """The log once it contains ``text`` (Dovecot writes it a moment after answering)."""
        deadline = time.monotonic() + limit
        while text not in (log := self.log) and time.monotonic() < deadline:
            time.sleep(0.05)
        return log

    def start(self) -> None:
        """Start Dovecot and wait until it greets IMAP clients."""
        self.process = subprocess.Popen(
            [str(DOVECOT), "-F", "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group, so kill() takes the children too
        )
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                stderr = (
                    self.process.stderr.read().decode(errors="replace")
                    if self.process.stderr
                    else ""
                )
                raise RuntimeError(f"dovecot exited at startup:\n{stderr}\n{self.log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    if sock.recv(100).startswith(b"* OK"):
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"dovecot did not answer on port {self.port}:\n{self.log}")

    def kill(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """Signal the master and every child at once and wait for the master to end.

        SIGKILL is a crash mid-session; SIGTERM a shutdown (clients get ``* BYE``).
        """
        if self.process is None:
            return
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)
        self.process.wait(timeout=10)
        self._close_pipe()
        self.process = None

    def _close_pipe(self) -> None:
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()

    def stop(self) -> None:
        """Stop Dovecot (SIGTERM, then SIGKILL) and delete its folder."""
        if self.process is not None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=10)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                self.kill()
            self._close_pipe()
            self.process = None
        shutil.rmtree(self.root, ignore_errors=True)

    def client(self, user: str = USER) -> IMAPClient:
        """A logged-in IMAPClient for ``user``."""
        client = IMAPClient("127.0.0.1", port=self.port, ssl=False, timeout=10)
        client.login(user, self.users[user])
        return client

    def append(
        self,
        messages: Iterable[bytes | dict[str, Any]],
        folder: str = "INBOX",
        user: str = USER,
        chunk: int = 200,
    ) -> None:
        """Deliver ``messages`` to ``folder`` (created if missing) with IMAP MULTIAPPEND.

        An item is the message's bytes, or imapclient's ``{"msg", "flags", "date"}`` dict.
        """
        pending = [
            {**m, "msg": normalise_crlf(m["msg"])} if isinstance(m, dict) else normalise_crlf(m)
            for m in messages
        ]
        client = self.client(user)
        try:
            if not client.folder_exists(folder):
                client.create_folder(folder)
            for start in range(0, len(pending), chunk):
                client.multiappend(folder, pending[start : start + chunk])
        finally:
            client.logout()


@contextmanager
def dovecot_server(users: dict[str, str] | None = None) -> Iterator[DovecotServer]:
    """A running Dovecot for the ``with`` block; usable outside pytest (benchmarks)."""
    if not DOVECOT.exists():
        raise FileNotFoundError(f"{DOVECOT} not found: install Debian's 'dovecot-imapd' package")
    server = DovecotServer(users)
    try:
        server.start()
        yield server
    finally:
        server.stop()


SUBJECTS = [
    (
        "Bus 12 late again",
        "The bus on route 12 was 25 minutes late this morning. Third time this week.",
    ),
    (
        "Cafeteria menu",
        "My daughter says the lunch portions are too small. Can someone look into it?",
    ),
    ("Autobús de la ruta 7", "El autobús de la ruta 7 no pasó hoy. Mi hijo esperó media hora."),
    ("Homework load", "Is there a policy on homework? My son spends three hours a night on it."),
    ("Calificaciones", "No puedo ver las calificaciones de mi hija en el portal desde el lunes."),
    ("Early dismissal", "Will after-school care still run on Friday's early dismissal day?"),
]
T0 = datetime(2026, 3, 2, 7, 30, tzinfo=UTC)


def sample_email(n: int, when: datetime | None = None) -> bytes:
    """A realistic parent email, number ``n``: English or Spanish, some multipart with HTML,
    some replies quoting the school's message with a signature."""
    subject, text = SUBJECTS[n % len(SUBJECTS)]
    when = when or T0 + timedelta(minutes=7 * n)
    headers = (
        f"From: Parent {n} <parent{n}@example.org>\n"
        f"To: info@district.example.org\n"
        f"Subject: {'Re: ' if n % 3 == 0 else ''}{subject} (#{n})\n"
        f"Date: {when.strftime('%a, %d %b %Y %H:%M:%S +0000')}\n"
        f"Message-ID: <msg-{n}@Mail.Example.ORG>\n"
        "MIME-Version: 1.0\n"
    )
    body = f"{text}\nReference {n}.\n"
    if n % 3 == 0:
        body += (
            "\n-- \nA parent\n\nOn Mon, Mar 2, 2026 at 7:00 AM District <info@district.example.org>"
            " wrote:\n> Dear families,\n> please write to us with any concern.\n"
        )
    if n % 2:
        html = "".join(f"<p>{line}</p>" for line in body.splitlines())
        return (
            headers
            + 'Content-Type: multipart/alternative; boundary="b"\n\n'
            + f"--b\nContent-Type: text/plain; charset=utf-8\n\n{body}\n"
            + f"--b\nContent-Type: text/html; charset=utf-8\n\n<html><body>{html}</body></html>\n"
            + "--b--\n"
        ).encode()
    return (headers + f"Content-Type: text/plain; charset=utf-8\n\n{body}").encode()
