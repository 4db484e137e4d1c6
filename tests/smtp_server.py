"""A real SMTP server for tests (aiosmtpd) that keeps every message it accepts.

``SmtpServer(port)`` listens on 127.0.0.1 once started and can be stopped and started again on
the same port (an outage). Options: replies for some recipients (550, 451, 421 …;
``server.handler.replies`` can change while it runs), a refused sender, no SMTPUTF8, a login (AUTH
PLAIN/LOGIN against one user), and TLS — STARTTLS or TLS on connect — with a self-signed
certificate for 127.0.0.1 made by the ``openssl`` command (:func:`make_certificate`); a client
trusts it by pointing ``SSL_CERT_FILE`` at the certificate.
"""

from __future__ import annotations

import email
import shutil
import ssl
import subprocess
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

OPENSSL = shutil.which("openssl")


@dataclass
class Received:
    """One message the server accepted."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    login: str | None  # the user who logged in, if any
    tls: bool


@dataclass
class Handler:
    """aiosmtpd hooks: answer listed recipients with their reply, keep the rest's messages."""

    replies: dict[str, str] = field(default_factory=dict)  # e.g. {"gone@x": "550 no such user"}
    mail_reply: str | None = None  # a refusal of every sender, e.g. "553 not your address"
    received: list[Received] = field(default_factory=list)

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list
    ) -> str:
        if self.mail_reply is not None:
            return self.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list
    ) -> str:
        if address in self.replies:
            return self.replies[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        message = email.message_from_bytes(envelope.original_content, policy=default_policy)
        login = session.auth_data.login.decode() if session.authenticated else None
        self.received.append(
            Received(
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                message=message,
                login=login,
                tls=server.transport.get_extra_info("ssl_object") is not None,
            )
        )
        return "250 2.0.0 accepted"


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate and key for localhost / 127.0.0.1 (needs ``openssl``)."""
    if OPENSSL is None:
        raise RuntimeError("the openssl command is not installed")
    cert, key = folder / "smtp-cert.pem", folder / "smtp-key.pem"
    subprocess.run(
        [
            *(OPENSSL, "req", "-x509", "-nodes", "-days", "2", "-subj", "/CN=localhost"),
            *("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
            *("-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


class SmtpServer:
    """An aiosmtpd server on 127.0.0.1:``port``; ``received`` survives restarts."""

    def __init__(
        self,
        port: int,
        *,
        replies: dict[str, str] | None = None,
        user: tuple[str, str] | None = None,
        tls: str | None = None,
        certificate: tuple[Path, Path] | None = None,
        smtputf8: bool = True,
    ) -> None:
        if tls not in (None, "starttls", "ssl"):
            raise ValueError(f"tls {tls!r}: use None, 'starttls' or 'ssl'")
        if tls and certificate is None:
            raise ValueError("TLS needs a certificate (make_certificate)")
        self.port = port
        self.handler = Handler(replies=dict(replies or {}))
        self.user = user
        self.tls = tls
        self.certificate = certificate
        self.smtputf8 = smtputf8
        self.controller: Controller | None = None

    @property
    def received(self) -> list[Received]:
        """Messages accepted so far, oldest first."""
        return self.handler.received

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            self.user is not None
            and isinstance(data, LoginPassword)
            and (data.login.decode(), data.password.decode()) == self.user
        )
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

    def start(self) -> SmtpServer:
        """Listen (again) on the port."""
        context = None
        if self.certificate is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*self.certificate)
        kwargs: dict[str, Any] = {"enable_SMTPUTF8": self.smtputf8}
        if self.user is not None:
            # aiosmtpd counts only STARTTLS as TLS for AUTH, not TLS on connect.
            kwargs |= {
                "authenticator": self._authenticate,
                "auth_require_tls": self.tls == "starttls",
            }
        if self.tls == "starttls":
            kwargs |= {"tls_context": context, "require_starttls": True}
        self.controller = Controller(
            self.handler,
            hostname="127.0.0.1",
            port=self.port,
            server_hostname="pulse-test-smtp",
            ssl_context=context if self.tls == "ssl" else None,
            **kwargs,
        )
        self.controller.start()
        return self

    def stop(self) -> None:
        """Stop listening: connections to the port are refused."""
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def __enter__(self) -> SmtpServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
