"""Email over SMTP: `send` one plain-text message (the escalation ladder), or
`send_message` a message built elsewhere (the email output, `bot.notify.email_output`).

`EmailSender` is synchronous (smtplib); the caller runs it in a thread.
SMTP_URL picks the transport:

* ``smtps://user:pass@host:465`` - TLS from the first byte (implicit TLS);
* ``smtp://user:pass@host:587`` - plain TCP, upgraded with STARTTLS. The
  ``?starttls=`` query (or the ``starttls`` argument) says how: ``auto``
  (default: upgrade when the server offers it), ``require`` (fail if it does
  not) or ``never``.

Credentials are only sent over TLS unless ``starttls=never`` says otherwise:
with ``auto`` a man in the middle could strip the STARTTLS offer, and we would
hand it the password in clear.

`NotifyError` is the one failure type of `bot.notify`; it lives here because
this module depends only on the standard library.
"""

from __future__ import annotations

import hashlib
import smtplib
import ssl
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from typing import Literal
from urllib.parse import parse_qsl, unquote, urlsplit

StartTLS = Literal["auto", "require", "never"]
_STARTTLS_MODES: tuple[StartTLS, ...] = ("auto", "require", "never")
_DEFAULT_PORTS = {"smtp": 25, "smtps": 465}
_MAX_DETAIL = 200


class NotifyError(Exception):
    """A notification could not be delivered.

    ``status`` is the HTTP status (PagerDuty) or SMTP reply code when the
    server answered, else None. ``retryable`` says whether trying again later
    may succeed (rate limits, 5xx, SMTP 4xx, network); the message never holds
    a credential. ``refused`` (email only) maps each address the server
    turned down to its reply (``"550 5.1.1 No such user"``) when nobody got
    the message: every recipient refused, or MAIL FROM / DATA refused.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = False,
        refused: Mapping[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.refused: dict[str, str] = dict(refused or {})


def redact(text: str, secrets: list[str]) -> str:
    """`text` with every non-empty secret replaced: a server may echo what we sent."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text


def trim(text: str, limit: int = _MAX_DETAIL) -> str:
    """One line of at most `limit` characters: server replies can be whole HTML pages."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def check_address(address: str) -> str:
    """`address` if it is one bare addr-spec (``lead@example.com``), else ValueError."""
    # parseaddr is lenient; insist on one bare addr-spec so nothing can smuggle
    # a second recipient or a header break into To: or the envelope.
    _, parsed = parseaddr(address)
    if (
        parsed != address.strip()
        or "@" not in parsed
        or any(c.isspace() or ord(c) < 32 or c in ",;<>" for c in parsed)
    ):
        raise ValueError(f"not a plain email address: {address!r}")
    return parsed


class EmailSender:
    """Sends plain-text mail through the server of `smtp_url`, as `sender`."""

    def __init__(
        self,
        smtp_url: str,
        sender: str,
        *,
        starttls: StartTLS | None = None,
        timeout: float = 10.0,
        tls_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
    ) -> None:
        """`tls_context` defaults to the system trust store (SSL_CERT_FILE honoured)."""
        parts = urlsplit(smtp_url)
        if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
            # Never echo the URL: it may carry the password.
            raise ValueError("SMTP URL: expected smtp://user:pass@host:port or smtps://…")
        query = dict(parse_qsl(parts.query))
        unknown = set(query) - {"starttls"}
        if unknown:
            raise ValueError(f"SMTP URL: unknown parameter(s) {sorted(unknown)}")
        mode = starttls or query.get("starttls", "auto")
        if mode not in _STARTTLS_MODES:
            raise ValueError(f"SMTP URL: starttls must be one of {_STARTTLS_MODES}, got {mode!r}")
        self.sender = check_address(sender)
        self.implicit_tls = parts.scheme == "smtps"
        self.host = parts.hostname
        self.port = parts.port or _DEFAULT_PORTS[parts.scheme]
        self.starttls: StartTLS = mode
        self.timeout = timeout
        self.local_hostname = local_hostname
        self._user = unquote(parts.username) if parts.username else None
        self._password = unquote(parts.password) if parts.password else ""
        self._tls_context = tls_context or ssl.create_default_context()

    def __repr__(self) -> str:
        scheme = "smtps" if self.implicit_tls else "smtp"
        user = f"{self._user}@" if self._user else ""
        return f"EmailSender({scheme}://{user}{self.host}:{self.port}, sender={self.sender!r})"

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def build(
        self, to: list[str], subject: str, body: str, *, message_id_key: str | None = None
    ) -> EmailMessage:
        """The message `send` would deliver (headers safe, Message-ID set)."""
        recipients = [check_address(a) for a in to]
        if not recipients:
            raise ValueError("no recipients")
        domain = self.sender.rpartition("@")[2]
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = ", ".join(recipients)
        # Collapse every run of whitespace (CR and LF included) to one space: a
        # subject built from alert text must not start a new header line.
        msg["Subject"] = " ".join(subject.split())
        msg["Date"] = format_datetime(datetime.now(UTC))
        if message_id_key is None:
            msg["Message-ID"] = make_msgid(domain=domain)
        else:
            # Same key, same Message-ID: a retried delivery can be recognised
            # (and threaded) by the receiving side instead of looking new.
            digest = hashlib.sha256(message_id_key.encode()).hexdigest()[:32]
            msg["Message-ID"] = f"<nexus.{digest}@{domain}>"
        # RFC 3834: out-of-office robots must not answer the bot.
        msg["Auto-Submitted"] = "auto-generated"
        msg.set_content(body)
        return msg

    def send(
        self, to: list[str], subject: str, body: str, *, message_id_key: str | None = None
    ) -> str:
        """Deliver one message to every address of `to`; returns its Message-ID.

        Blocks for up to `timeout` seconds per network operation. Raises
        `NotifyError` if the server did not accept it for every recipient.
        """
        try:
            msg = self.build(to, subject, body, message_id_key=message_id_key)
        except ValueError as exc:
            raise NotifyError(f"email not sent: {exc}") from None
        refused = self.send_message(msg, to)
        if refused:
            # Some recipients have the message: retrying would duplicate it for them.
            raise self._error(f"some recipients refused: {_refusals(refused)}")
        return str(msg["Message-ID"])

    def send_message(self, msg: EmailMessage, to: Sequence[str]) -> dict[str, tuple[int, bytes]]:
        """Deliver `msg` to the envelope recipients `to` (never taken from its headers).

        Returns the recipients refused while others accepted it (smtplib's
        ``{address: (code, reply)}``, empty when all got it): they must not be
        retried with the others, who would get it twice. Raises `NotifyError`
        when nobody got it; its ``refused`` names each address and the reply
        when the refusal was about the message or its recipients.
        """
        try:
            recipients = [check_address(a) for a in to]
            if not recipients:
                raise ValueError("no recipients")
        except ValueError as exc:
            raise NotifyError(f"email not sent: {exc}") from None
        try:
            with self._connect() as smtp:
                self._secure_and_login(smtp)
                return smtp.send_message(msg, from_addr=self.sender, to_addrs=recipients)
        except NotifyError:
            raise
        except smtplib.SMTPRecipientsRefused as exc:
            # Nobody got it; worth retrying only if every refusal was temporary (4xx).
            temporary = all(400 <= code < 500 for code, _ in exc.recipients.values())
            detail = f"all recipients refused: {_refusals(exc.recipients)}"
            refusals = self.refusal_replies(exc.recipients)
            raise self._error(detail, retryable=temporary, refused=refusals) from None
        except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
            # MAIL FROM or the message itself turned down: the same for every recipient.
            reply = f"{exc.smtp_code} {_text(exc.smtp_error)}"
            temporary = 400 <= exc.smtp_code < 500
            raise self._error(
                f"server answered {reply}",
                status=exc.smtp_code,
                retryable=temporary,
                refused=None if temporary else self._same_reply(recipients, reply),
            ) from None
        except smtplib.SMTPResponseException as exc:
            raise self._error(
                f"server answered {exc.smtp_code} {_text(exc.smtp_error)}",
                status=exc.smtp_code,
                retryable=400 <= exc.smtp_code < 500,
            ) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise self._error(f"server does not support it: {exc}") from None
        except ssl.SSLCertVerificationError as exc:
            raise self._error(f"TLS certificate not trusted: {exc.verify_message}") from None
        except (smtplib.SMTPException, OSError) as exc:
            # Connection refused, DNS, timeouts, dropped connections: may pass.
            raise self._error(f"{type(exc).__name__}: {exc}", retryable=True) from None

    def refusal_replies(self, refused: Mapping[str, tuple[int, bytes]]) -> dict[str, str]:
        """``{address: "550 5.1.1 No such user"}``, one short line each, secrets redacted."""
        return {
            address: self._clean(f"{code} {_text(reply)}")
            for address, (code, reply) in refused.items()
        }

    def _same_reply(self, recipients: list[str], reply: str) -> dict[str, str]:
        clean = self._clean(reply)
        return dict.fromkeys(recipients, clean)

    def _clean(self, text: str) -> str:
        # Redact before trimming: a cut could leave half the password behind.
        return trim(redact(text, [self._password]))

    def _connect(self) -> smtplib.SMTP:
        if self.implicit_tls:
            return smtplib.SMTP_SSL(
                self.host,
                self.port,
                local_hostname=self.local_hostname,
                timeout=self.timeout,
                context=self._tls_context,
            )
        return smtplib.SMTP(
            self.host, self.port, local_hostname=self.local_hostname, timeout=self.timeout
        )

    def _secure_and_login(self, smtp: smtplib.SMTP) -> None:
        encrypted = self.implicit_tls
        if not encrypted and self.starttls != "never":
            smtp.ehlo()
            if smtp.has_extn("starttls"):
                smtp.starttls(context=self._tls_context)
                smtp.ehlo()  # capabilities (AUTH) change once encrypted
                encrypted = True
            elif self.starttls == "require":
                raise self._error("server does not offer STARTTLS (starttls=require)")
        if self._user is None:
            return
        if not encrypted and self.starttls != "never":
            raise self._error(
                "refusing to send credentials over an unencrypted connection: "
                "use smtps://, a server offering STARTTLS, or ?starttls=never"
            )
        smtp.login(self._user, self._password)

    def _error(
        self,
        detail: str,
        *,
        status: int | None = None,
        retryable: bool = False,
        refused: Mapping[str, str] | None = None,
    ) -> NotifyError:
        # Redact before trimming: a cut could leave half the password behind.
        message = trim(redact(f"SMTP {self.where}: {detail}", [self._password]), 300)
        return NotifyError(message, status=status, retryable=retryable, refused=refused)


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def _refusals(recipients: Mapping[str, tuple[int, bytes]]) -> str:
    return "; ".join(f"{addr}: {code} {_text(text)}" for addr, (code, text) in recipients.items())
