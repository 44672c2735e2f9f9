"""Tiny client for oauth-broker: get a fresh OAuth access token from the local
broker instead of refreshing (and racing other programs for) the refresh token.

Standard library only, Python 3.8 or newer; copy this one file into your agent.

    from oauth_broker_client import Client, NeedsLoginError

    with Client(client_name="my-agent") as broker:
        token = broker.token(min_valid=60)
        headers = {"Authorization": token.bearer_header()}
        # ... if the API answers 401:
        token = broker.unauthorized(token)

The broker is found like the Rust client finds it: an explicit socket path, else
``OAUTH_BROKER_SOCKET``, else ``$XDG_RUNTIME_DIR/oauth-broker/<account>.sock``
with the account from the argument, ``OAUTH_BROKER_ACCOUNT`` or ``default``.
When ``XDG_RUNTIME_DIR`` is unset or relative, ``/run/user/<uid>`` is used if it
exists, else ``$TMPDIR/oauth-broker-<uid>`` (default ``/tmp/oauth-broker-<uid>``).
Account names are checked by the broker's rule: 1 to 64 ASCII letters, digits,
``-``, ``_`` or ``.``, not starting with ``.``.

Right after connecting, before sending a byte, the client asks the kernel
(``SO_PEERCRED``) who serves the socket and refuses anyone but this user and
root (:class:`UntrustedPeerError`): under ``/tmp`` another user could have
created the socket first.

Wire protocol: every message is a frame of a 4-byte big-endian length and that
many bytes of JSON (at most 64 KiB). The client sends ``{"protocol": 1,
"client": NAME}``, the broker answers ``{"type": "welcome", ...}`` or an error
frame; then each request (``{"type": "token", "min_valid_secs": N}``,
``{"type": "unauthorized", "token_id": ID}``, ``{"type": "status"}``) gets one
response (``{"type": "token", ...}``, ``{"type": "status", ...}`` or
``{"type": "error", "code": ..., "message": ..., "hint": ...}``).

Errors are typed: one exception class per protocol error code (all subclasses of
:class:`BrokerError`), plus :class:`BrokerUnreachableError`,
:class:`BrokerTimeoutError` and :class:`ProtocolError` for local failures.
No exception, ``repr`` or ``str`` ever contains a token.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import socket
import struct
import time
from typing import Any, Dict, List, Mapping, Optional, Union

__all__ = [
    "PROTOCOL_VERSION",
    "MAX_FRAME_LEN",
    "SOCKET_ENV",
    "ACCOUNT_ENV",
    "DEFAULT_ACCOUNT",
    "Client",
    "Token",
    "default_socket_path",
    "token_fingerprint",
    "BrokerError",
    "NeedsLoginError",
    "NotLoggedInError",
    "ReloginRequiredError",
    "UpstreamUnavailableError",
    "PermissionDeniedError",
    "BadRequestError",
    "UnsupportedProtocolError",
    "BusyError",
    "InternalBrokerError",
    "BrokerUnreachableError",
    "BrokerTimeoutError",
    "ConfigError",
    "ProtocolError",
    "UntrustedPeerError",
    "MAX_ACCOUNT_LEN",
    "validate_account_name",
]

__version__ = "0.1.0"

#: The protocol version this module speaks.
PROTOCOL_VERSION = 1
#: Largest frame payload either side sends (64 KiB).
MAX_FRAME_LEN = 64 * 1024
#: Environment variable naming the socket explicitly.
SOCKET_ENV = "OAUTH_BROKER_SOCKET"
#: Environment variable naming the account.
ACCOUNT_ENV = "OAUTH_BROKER_ACCOUNT"
#: The account used when none is named.
DEFAULT_ACCOUNT = "default"
#: Longest account name, in bytes (the broker's limit).
MAX_ACCOUNT_LEN = 64

_START_BROKER_HINT = (
    "start the broker (`systemctl --user start oauth-broker` or run `brokerd`), "
    "or point OAUTH_BROKER_SOCKET at its socket"
)
_UNTRUSTED_PEER_HINT = (
    "point XDG_RUNTIME_DIR or OAUTH_BROKER_SOCKET at a directory only you can write, "
    "for both brokerd and its clients, and report the socket's owner to the administrator"
)


# --------------------------------------------------------------------------- errors


class BrokerError(Exception):
    """Base class of every error of this module.

    ``code`` is the protocol's error code (``None`` for local failures), and
    ``message``, ``hint``, ``retry_after`` (seconds) and ``reason`` come from
    the broker's error frame.
    """

    code = None  # type: Optional[str]

    def __init__(
        self,
        message: str,
        hint: Optional[str] = None,
        retry_after: Optional[int] = None,
        reason: Optional[str] = None,
        code: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.retry_after = retry_after
        self.reason = reason
        if code is not None:
            self.code = code

    @property
    def needs_login(self) -> bool:
        """True when only a human can fix it (``brokerctl relogin``)."""
        return isinstance(self, NeedsLoginError)

    @property
    def retryable(self) -> bool:
        """True when the same request may succeed later."""
        return isinstance(
            self,
            (UpstreamUnavailableError, BusyError, BrokerUnreachableError, BrokerTimeoutError),
        )

    def __str__(self) -> str:
        text = "{}: {}".format(self.code, self.message) if self.code else self.message
        if self.reason:
            text += " (reason: {})".format(self.reason)
        if self.retry_after is not None:
            text += " (retry after {}s)".format(self.retry_after)
        if self.hint:
            text += "; " + self.hint
        return text


class NeedsLoginError(BrokerError):
    """Not logged in, or the login is dead: a human must run ``brokerctl relogin``.
    Agents typically switch to a fallback provider instead of retrying."""


class NotLoggedInError(NeedsLoginError):
    """The account has no login yet."""

    code = "not_logged_in"


class ReloginRequiredError(NeedsLoginError):
    """The authorization server refused the refresh token for good;
    ``reason`` says why (e.g. ``refresh_token_reused``)."""

    code = "relogin_required"


class UpstreamUnavailableError(BrokerError):
    """The token endpoint is failing and no cached token is valid;
    retry after ``retry_after`` seconds."""

    code = "upstream_unavailable"


class PermissionDeniedError(BrokerError):
    """The broker refused this user."""

    code = "permission_denied"


class BadRequestError(BrokerError):
    """The broker did not accept the request."""

    code = "bad_request"


class UnsupportedProtocolError(BrokerError):
    """The broker speaks another protocol version."""

    code = "unsupported_protocol"


class BusyError(BrokerError):
    """The broker is at its connection limit or already running a login."""

    code = "busy"


class InternalBrokerError(BrokerError):
    """A bug or an unexpected local failure in the broker."""

    code = "internal"


class BrokerUnreachableError(BrokerError, ConnectionError):
    """No broker answers on the socket."""


class BrokerTimeoutError(BrokerError, TimeoutError):
    """The broker did not answer in time."""


class ConfigError(BrokerError, ValueError):
    """A local configuration problem, e.g. an invalid account name."""


class ProtocolError(BrokerError):
    """The broker sent something this client does not understand, or the
    connection broke mid-conversation."""


class UntrustedPeerError(BrokerError, PermissionError):
    """The socket is served by another (non-root) user: an impostor may have
    created the socket's directory first (easy under ``/tmp``), so nothing was
    sent to it. ``path`` and ``uid`` say which socket and whose."""

    def __init__(self, path: str, uid: int) -> None:
        super().__init__(
            "the socket at {} is served by uid {}, not by this user or root — refusing to "
            "talk to it (a fallback socket under /tmp could have been created by another "
            "user)".format(path, uid),
            hint=_UNTRUSTED_PEER_HINT,
        )
        self.path = path
        self.uid = uid


_ERROR_CLASSES = {
    cls.code: cls
    for cls in (
        NotLoggedInError,
        ReloginRequiredError,
        UpstreamUnavailableError,
        PermissionDeniedError,
        BadRequestError,
        UnsupportedProtocolError,
        BusyError,
        InternalBrokerError,
    )
}


def error_from_frame(frame: Mapping[str, Any]) -> BrokerError:
    """The typed exception for an error frame. Unknown codes (from a newer
    broker) give a plain :class:`BrokerError` that keeps the code."""
    code = str(frame.get("code") or "unknown")
    cls = _ERROR_CLASSES.get(code, BrokerError)
    retry_after = frame.get("retry_after_secs")
    return cls(
        str(frame.get("message") or "the broker reported an error"),
        hint=frame.get("hint"),
        retry_after=int(retry_after) if isinstance(retry_after, (int, float)) else None,
        reason=frame.get("reason"),
        code=None if cls is not BrokerError else code,
    )


# --------------------------------------------------------------------------- tokens


def token_fingerprint(access_token: str) -> str:
    """The non-secret id of a token: first 12 hex digits of its SHA-256."""
    return hashlib.sha256(access_token.encode("utf-8")).hexdigest()[:12]


class Token:
    """A short-lived access token from the broker.

    The secret is ``token.access_token`` (or ``token.bearer_header()``);
    ``repr()`` and ``str()`` show everything else, so a token logged by accident
    stays secret. Pass the object back to :meth:`Client.unauthorized` when an API
    rejects it.
    """

    __slots__ = ("_secret", "token_type", "expires_at", "token_id", "scopes", "metadata")

    def __init__(
        self,
        access_token: str,
        token_type: str = "Bearer",
        expires_at: int = 0,
        token_id: Optional[str] = None,
        scopes: Optional[List[str]] = None,
        metadata: Optional[Dict[str, str]] = None,
    ) -> None:
        self._secret = access_token
        self.token_type = token_type
        #: Expiry, unix seconds.
        self.expires_at = expires_at
        #: Non-secret fingerprint, safe to log.
        self.token_id = token_id or token_fingerprint(access_token)
        self.scopes = list(scopes or [])
        #: Non-secret extras, e.g. ``account_id`` or an API base URL.
        self.metadata = dict(metadata or {})

    @classmethod
    def from_frame(cls, frame: Mapping[str, Any]) -> "Token":
        secret = frame.get("access_token")
        if not isinstance(secret, str) or not secret:
            raise ProtocolError("the broker's token response has no access_token")
        return cls(
            secret,
            token_type=str(frame.get("token_type") or "Bearer"),
            expires_at=int(frame.get("expires_at") or 0),
            token_id=frame.get("token_id"),
            scopes=frame.get("scopes") or [],
            metadata=frame.get("metadata") or {},
        )

    @property
    def access_token(self) -> str:
        """The bearer credential itself."""
        return self._secret

    def remaining(self) -> float:
        """Seconds until expiry, 0 if expired."""
        return max(0.0, self.expires_at - time.time())

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0

    def bearer_header(self) -> str:
        """The value of an ``Authorization`` header, e.g. ``Bearer eyJ…``."""
        scheme = "Bearer" if self.token_type.lower() == "bearer" else self.token_type
        return "{} {}".format(scheme, self._secret)

    def __repr__(self) -> str:
        return "Token(token_id={!r}, token_type={!r}, expires_at={!r}, scopes={!r})".format(
            self.token_id, self.token_type, self.expires_at, self.scopes
        )

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Token) and other.token_id == self.token_id

    def __hash__(self) -> int:
        return hash(self.token_id)


# --------------------------------------------------------------------------- discovery


def validate_account_name(account: str) -> None:
    """Raises :class:`ConfigError` unless ``account`` is a name the broker
    accepts: 1 to 64 ASCII letters, digits, ``-``, ``_`` or ``.``, not starting
    with ``.`` (the Rust crate's ``validate_account_name``)."""
    ok = (
        0 < len(account.encode("utf-8")) <= MAX_ACCOUNT_LEN
        and not account.startswith(".")
        and all(c.isascii() and (c.isalnum() or c in "-_.") for c in account)
    )
    if not ok:
        raise ConfigError(
            "invalid account name {!r}: use 1-{} letters, digits, '-', '_' or '.' "
            "(not starting with '.')".format(account, MAX_ACCOUNT_LEN)
        )


def _fallback_runtime_dir(environ: Mapping[str, str], uid: int, isdir=os.path.isdir) -> str:
    """The runtime directory without a usable ``XDG_RUNTIME_DIR``: logind's
    ``/run/user/<uid>`` if it exists, else ``$TMPDIR/oauth-broker-<uid>``
    (``/tmp`` when ``TMPDIR`` is unset), like the Rust client and brokerd."""
    run_user = "/run/user/{}".format(uid)
    if isdir(run_user):
        return run_user
    tmp = environ.get("TMPDIR")
    return os.path.join("/tmp" if tmp is None else tmp, "oauth-broker-{}".format(uid))


def default_socket_path(
    account: Optional[str] = None,
    environ: Optional[Mapping[str, str]] = None,
    uid: Optional[int] = None,
    isdir=os.path.isdir,
) -> str:
    """The socket a client connects to when no path is given (see the module
    docs). ``environ``, ``uid`` and ``isdir`` (which says whether
    ``/run/user/<uid>`` exists) default to the process's own."""
    env = os.environ if environ is None else environ

    def var(name: str) -> Optional[str]:
        value = env.get(name)
        return value if value else None  # empty counts as unset

    explicit = var(SOCKET_ENV)
    if explicit:
        return explicit
    name = account if account is not None else (var(ACCOUNT_ENV) or DEFAULT_ACCOUNT)
    validate_account_name(name)
    runtime = var("XDG_RUNTIME_DIR")
    if not runtime or not os.path.isabs(runtime):
        runtime = _fallback_runtime_dir(env, os.getuid() if uid is None else uid, isdir)
    return os.path.join(runtime, "oauth-broker", name + ".sock")


# --------------------------------------------------------------------------- peer


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process serving a connected Unix socket (for a client:
    whoever created the listening socket), from ``SO_PEERCRED``."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        # Like the Rust client on such platforms: better no client than one
        # that may talk to another user's socket.
        raise OSError(errno.ENOTSUP, "cannot tell who serves the socket on this platform")
    creds = sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("iII"))
    _pid, uid, _gid = struct.unpack("iII", creds)
    return uid


def check_peer(path: str, uid: int, my_uid: Optional[int] = None) -> None:
    """Raises :class:`UntrustedPeerError` unless ``uid`` is this user's or root's."""
    me = os.getuid() if my_uid is None else my_uid
    if uid != me and uid != 0:
        raise UntrustedPeerError(path, uid)


# --------------------------------------------------------------------------- framing


def encode_frame(message: Mapping[str, Any]) -> bytes:
    """A complete frame: 4-byte big-endian length + compact JSON."""
    payload = json.dumps(message, separators=(",", ":")).encode("utf-8")
    if len(payload) > MAX_FRAME_LEN:
        raise ProtocolError("a frame of {} bytes exceeds the 64 KiB limit".format(len(payload)))
    return struct.pack(">I", len(payload)) + payload


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks = []
    while n:
        chunk = sock.recv(n)
        if not chunk:
            raise _ConnectionLost("the broker closed the connection")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_frame(sock: socket.socket) -> Dict[str, Any]:
    """Reads one frame and parses its JSON object."""
    (length,) = struct.unpack(">I", _recv_exact(sock, 4))
    if length > MAX_FRAME_LEN:
        raise ProtocolError(
            "the broker announced a frame of {} bytes (limit 64 KiB)".format(length)
        )
    try:
        message = json.loads(_recv_exact(sock, length).decode("utf-8"))
    except ValueError as e:
        raise ProtocolError("the broker sent a malformed frame: {}".format(e.__class__.__name__))
    if not isinstance(message, dict):
        raise ProtocolError("the broker sent a frame that is not a JSON object")
    return message


class _ConnectionLost(ProtocolError):
    """The connection broke; a request on a reused connection may be resent."""


# --------------------------------------------------------------------------- client


class Client:
    """A connection to the broker; reuse it for many requests.

    Connects on first use (or :meth:`connect`). If the broker restarted since
    the last request, the request is resent once on a new connection: token,
    unauthorized and status are all safe to repeat. Not thread-safe: use one
    client per thread.
    """

    def __init__(
        self,
        socket_path: Optional[str] = None,
        *,
        account: Optional[str] = None,
        client_name: str = "python",
        connect_timeout: float = 5.0,
        request_timeout: float = 45.0,
        busy_retry_budget: float = 2.0,
    ) -> None:
        self._explicit_path = socket_path
        #: Seconds, in all, spent waiting out a broker that answers ``busy``
        #: (at its connection limit) before :class:`BusyError` is raised; 0
        #: turns the waiting off. Like the Rust client.
        self.busy_retry_budget = busy_retry_budget
        self._account = account
        self.client_name = client_name
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self._sock = None  # type: Optional[socket.socket]
        #: The broker's welcome (``protocol``, ``broker_version``, ``account``)
        #: once connected.
        self.welcome = None  # type: Optional[Dict[str, Any]]

    @property
    def socket_path(self) -> str:
        """Where this client connects."""
        return self._explicit_path or default_socket_path(self._account)

    # -- connection

    def connect(self) -> "Client":
        """Connects and performs the handshake (if not connected yet). A
        ``busy`` broker is waited out within ``busy_retry_budget``."""
        if self._sock is None:
            self._sock = self._waiting_out_busy(self._open)
        return self

    def _waiting_out_busy(self, attempt):
        """Calls ``attempt`` until it does not raise :class:`BusyError` or the
        budget is spent: waits the broker's ``retry_after`` (never less), or
        backs off from 50 ms when it names none (the Rust client's rule)."""
        waited = 0.0
        backoff = 0.05
        while True:
            try:
                return attempt()
            except BusyError as e:
                if e.retry_after is not None:
                    wait = float(e.retry_after)
                else:
                    wait, backoff = backoff, backoff * 2
                if waited + wait > self.busy_retry_budget:
                    raise
                waited += wait
                time.sleep(wait)

    def _open(self) -> socket.socket:
        path = self.socket_path
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.connect_timeout)
            try:
                sock.connect(path)
            except socket.timeout:
                raise BrokerTimeoutError(
                    "connecting to {} timed out".format(path), hint=_START_BROKER_HINT
                )
            except OSError as e:
                raise BrokerUnreachableError(
                    "no broker at {} ({})".format(path, e.strerror or e), hint=_START_BROKER_HINT
                )
            # Before anything is sent: the socket might be an impostor's.
            try:
                uid = peer_uid(sock)
            except OSError as e:
                raise BrokerError(
                    "cannot tell who serves {} ({}); refusing to talk to it".format(
                        path, e.strerror or e
                    )
                )
            check_peer(path, uid)
            try:
                sock.sendall(encode_frame({"protocol": PROTOCOL_VERSION, "client": self.client_name}))
                answer = read_frame(sock)
            except socket.timeout:
                raise BrokerTimeoutError("the broker at {} did not answer the handshake".format(path))
            except _ConnectionLost:
                raise BrokerUnreachableError(
                    "the broker at {} closed the connection during the handshake".format(path),
                    hint=_START_BROKER_HINT,
                )
            except OSError as e:
                raise BrokerUnreachableError("handshake with {} failed ({})".format(path, e))
            if answer.get("type") == "error":
                raise error_from_frame(answer)
            if answer.get("type") != "welcome":
                raise ProtocolError("expected a welcome, got {!r}".format(answer.get("type")))
            self.welcome = answer
            sock.settimeout(self.request_timeout)
            return sock
        except BaseException:
            sock.close()
            raise

    def close(self) -> None:
        """Closes the connection (a later request reconnects)."""
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def __enter__(self) -> "Client":
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        return "Client(socket_path={!r}, connected={})".format(
            self._explicit_path or "<discovered>", self._sock is not None
        )

    # -- requests

    def _request(self, request: Mapping[str, Any], expected: str) -> Dict[str, Any]:
        return self._waiting_out_busy(lambda: self._request_once(request, expected))

    def _request_once(self, request: Mapping[str, Any], expected: str) -> Dict[str, Any]:
        reused = self._sock is not None
        try:
            return self._exchange(request, expected)
        except _ConnectionLost:
            self.close()
            if not reused:
                raise
        # The broker restarted or dropped the idle connection: once more on a
        # new connection (all requests of this client are idempotent).
        try:
            return self._exchange(request, expected)
        except _ConnectionLost:
            self.close()
            raise

    def _exchange(self, request: Mapping[str, Any], expected: str) -> Dict[str, Any]:
        if self._sock is None:
            self._sock = self._open()  # a busy answer is waited out by _request
        sock = self._sock
        assert sock is not None
        try:
            sock.sendall(encode_frame(request))
            answer = read_frame(sock)
        except socket.timeout:
            self.close()
            raise BrokerTimeoutError(
                "the broker did not answer within {}s".format(self.request_timeout),
                hint="the token endpoint may be slow; retry, or raise request_timeout",
            )
        except (BrokenPipeError, ConnectionResetError) as e:
            raise _ConnectionLost("the connection to the broker broke ({})".format(e))
        except ProtocolError:
            self.close()
            raise
        except OSError as e:
            self.close()
            raise ProtocolError("talking to the broker failed ({})".format(e))
        kind = answer.get("type")
        if kind == "error":
            raise error_from_frame(answer)
        if kind != expected:
            self.close()
            raise ProtocolError("expected a {} response, got {!r}".format(expected, kind))
        return answer

    def token(self, min_valid: int = 60) -> Token:
        """An access token valid for at least ``min_valid`` more seconds (capped
        by what a fresh token gives). Raises :class:`NeedsLoginError` subclasses
        when a human must log in, :class:`UpstreamUnavailableError` when the
        token endpoint is failing."""
        answer = self._request({"type": "token", "min_valid_secs": max(0, int(min_valid))}, "token")
        return Token.from_frame(answer)

    def unauthorized(self, token: Union[Token, str]) -> Token:
        """Report that an API rejected ``token`` (a :class:`Token` or the raw
        access token) with 401. The broker refreshes once if it is still the
        current token, otherwise returns the newer one."""
        token_id = token.token_id if isinstance(token, Token) else token_fingerprint(token)
        answer = self._request({"type": "unauthorized", "token_id": token_id}, "token")
        return Token.from_frame(answer)

    def status(self) -> Dict[str, Any]:
        """The broker's status report (``state``, ``account``, ``provider``,
        ``access_token_expires_at``, ``relogin_required``, ...; the schema of
        ``brokerctl status --json``). Never waits behind a refresh."""
        answer = self._request({"type": "status"}, "status")
        answer.pop("type", None)
        return answer
