"""Who may use the dashboard, and how a state-changing request proves it comes from its page.

- **Binding.** Loopback by default. Any other address is reachable by other machines, so it
  needs a token (``--token`` or GALLEY_DASHBOARD_TOKEN); the token is then required on every
  request: a cookie the page's first visit (``/?token=...``) sets, or ``Authorization: Bearer``.
- **Host.** On loopback, a request whose ``Host`` is not this server's (``127.0.0.1:PORT``,
  ``localhost:PORT``) is refused: that is how DNS rebinding would let another site read the page.
- **Cross-site requests.** Redrive and purge are POST only, and need both the per-process CSRF
  token the page embeds (``X-Galley-CSRF``; another site cannot read the page to learn it) and an
  ``Origin`` equal to this server's (browsers send it on every cross-site POST).

Each refusal is a :class:`Refusal`: the HTTP status and one line saying what is missing.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
import secrets
from dataclasses import dataclass, field
from http import cookies

#: The header carrying the page's CSRF token on POST.
CSRF_HEADER = "x-galley-csrf"
#: The cookie holding the access token, once the page was opened with ``?token=``.
TOKEN_COOKIE = "galley_dashboard_token"  # noqa: S105 - the cookie's name, not a secret
#: Names a browser may use for a loopback server.
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
#: What a token may be: long enough not to be guessed, and safe in a cookie and a URL.
TOKEN = re.compile(r"[A-Za-z0-9._~+/=-]{16,512}")


@dataclass(frozen=True)
class Refusal:
    status: int
    error: str


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.strip("[]") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_binding(host: str, token: str | None) -> None:
    """ValueError, one line, if ``host`` needs a token and has none, or the token is unfit."""
    if token is not None and not TOKEN.fullmatch(token):
        raise ValueError(
            "the dashboard token must be 16 to 512 characters of letters, digits and ._~+/=- "
            "(e.g. the output of: python -c 'import secrets; print(secrets.token_urlsafe())')"
        )
    if token is None and not is_loopback(host):
        raise ValueError(
            f"--host {host} is not a loopback address: anyone who can reach it could redrive "
            "and purge, so give a token (--token or GALLEY_DASHBOARD_TOKEN)"
        )


@dataclass(frozen=True)
class Guard:
    """The access rules of one dashboard server, bound to ``host``:``port``."""

    host: str
    port: int
    #: Required on every request when set (always set when ``host`` is not loopback).
    token: str | None = None
    #: Embedded in the page, required on POST; new for every server process.
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    def __post_init__(self) -> None:
        check_binding(self.host, self.token)

    def hosts(self) -> set[str]:
        """The ``Host`` values a loopback server answers to."""
        names = {*LOOPBACK_NAMES, self.host if ":" not in self.host else f"[{self.host}]"}
        return {f"{name}:{self.port}" for name in names}

    def check_access(self, headers: dict[str, str], query_token: str | None) -> Refusal | None:
        """Any request: the Host rule on loopback, the token where one is set."""
        if is_loopback(self.host) and headers.get("host", "") not in self.hosts():
            return Refusal(
                403,
                f"Host {headers.get('host', '')!r} is not this dashboard's "
                f"(open http://127.0.0.1:{self.port}/)",
            )
        if self.token is None:
            return None
        offered = [query_token, _bearer(headers.get("authorization", ""))]
        offered.append(_cookie(headers.get("cookie", ""), TOKEN_COOKIE))
        if any(t is not None and _same(t, self.token) for t in offered):
            return None
        return Refusal(
            401,
            "this dashboard needs its token: open the URL `galley dashboard` printed "
            "(/?token=...), or send Authorization: Bearer TOKEN",
        )

    def check_post(self, headers: dict[str, str]) -> Refusal | None:
        """A state-changing request: the CSRF token and a same-origin ``Origin``."""
        expected = f"http://{headers.get('host', '')}"
        origin = headers.get("origin")
        if origin is None:
            return Refusal(403, f"cross-site check: a POST needs the header Origin: {expected}")
        if origin != expected:
            return Refusal(403, f"cross-site check: Origin {origin!r} is not {expected!r}")
        return self.check_csrf(headers)

    def check_csrf(self, headers: dict[str, str]) -> Refusal | None:
        """The page's CSRF token in ``X-Galley-CSRF``: also asked of a GET that changes
        something (listing the dead letters receives each one), which another site's page can
        make a browser send (an ``<img>``) but not with a header of its choosing."""
        if not _same(headers.get(CSRF_HEADER, ""), self.csrf):
            return Refusal(
                403,
                "cross-site check: missing or wrong CSRF token in X-Galley-CSRF (reload the "
                "page: the token changes each time galley dashboard starts)",
            )
        return None

    def cookie(self) -> str:
        """The Set-Cookie value that keeps the token for this server's later requests."""
        assert self.token is not None
        return f"{TOKEN_COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict"


def _same(offered: str, expected: str) -> bool:
    return hmac.compare_digest(offered.encode("utf-8", "replace"), expected.encode())


def _bearer(header: str) -> str | None:
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def _cookie(header: str, name: str) -> str | None:
    jar: cookies.SimpleCookie = cookies.SimpleCookie()
    try:
        jar.load(header)
    except cookies.CookieError:
        return None
    morsel = jar.get(name)
    return None if morsel is None else morsel.value
