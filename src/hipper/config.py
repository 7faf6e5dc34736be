"""Configuration: defaults, then a TOML file, then HIPPER_* environment variables (highest wins)."""

from __future__ import annotations

import ipaddress
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HIPPER_", extra="ignore")

    data_dir: Path = Path("./hipper-data")
    # Empty means SQLite in the data directory; otherwise any SQLAlchemy async URL
    # (postgresql+asyncpg://user:pass@host/db).
    database_url: str = ""
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    sip_host: str = "127.0.0.1"
    sip_port: int = 5060
    sip_realm: str = "hipper.local"
    # SIP registrar and transports (hipper.sip); the node name is stored with each registration.
    sip_tcp: bool = True
    sip_min_expires: int = 60
    sip_max_expires: int = 3600
    sip_nonce_seconds: int = 300
    # Failed SIP logins (docs/security.md "SIP authentication"): a source address that fails this many times within
    # the window is banned (its REGISTER/INVITE/SUBSCRIBE dropped unanswered) for the ban period; an account
    # (digest username) that fails this many times is locked for the ban period against addresses it never
    # authenticated from.
    sip_auth_source_failures: int = Field(20, ge=1)
    sip_auth_account_failures: int = Field(10, ge=1)
    sip_auth_failure_window_seconds: float = Field(60.0, gt=0)
    sip_auth_ban_seconds: float = Field(600.0, ge=0)
    # Messages per second (sustained, and in a burst) one source address may send before the rest is dropped unread
    # (the trunk and mobile network addresses are exempt); 0 turns the limit off. A phone sends a few per call.
    sip_source_messages_per_second: float = Field(200.0, ge=0)
    sip_source_burst: float = Field(400.0, ge=1)
    sip_node: str = ""
    # Edge proxies in front of the nodes (Kamailio, docs/scale-out.md), by IP address: requests from them are
    # judged by the address they attest in X-Hipper-Source (digest nonces, bans, trust of the trunk by address)
    # and they are never rate limited (the edge limits per phone). Only list proxies that strip that header.
    sip_trusted_proxies: list[str] = Field(default_factory=list)
    # This process among the nodes sharing the database (store/presence.py: who is on a call, per node, with a
    # lease). Empty: host name and process id. Set it when host names repeat; keep it unique per running node.
    node_id: str = Field("", max_length=100)  # the width of nodes.node_id
    # Where the other nodes reach this node's HTTP API (call control for a call this node carries, asked of
    # another node, is forwarded there: docs/scale-out.md). Empty: http://<http_host>:<http_port>, with a
    # wildcard host read as 127.0.0.1 — right for nodes on one machine; set it when the nodes are on several.
    node_api_url: str = Field("", max_length=300, pattern=r"^(https?://[^\s/?#]+/?)?$")
    # How long a node's calls keep counting after it stopped renewing its lease (it died); renewed every third.
    node_lease_seconds: float = Field(30.0, gt=0)
    # Digest challenges offered, in this order (RFC 8760: clients pick the first they support). MD5 only by
    # default: SIPp 3.6 reads just the first challenge and baresip 1.0 fails on any SHA-256 one. Credentials
    # with either algorithm are always verified; offer ["SHA-256", "MD5"] when all phones can take it.
    sip_digest_algorithms: list[str] = Field(default_factory=lambda: ["MD5"])
    # The address put in our Via/Contact when sip_host is a wildcard (0.0.0.0) or behind NAT; empty = sip_host.
    sip_advertised_host: str = ""
    # SIP over TLS (RFC 3261 §26) on its own port, off while None (5061 is the usual port). Needs a PEM
    # certificate (chain) and its unencrypted private key; `hipper serve` refuses to start without them.
    sip_tls_port: int | None = None
    sip_tls_cert_file: Path | None = None
    sip_tls_key_file: Path | None = None
    log_level: str = "INFO"
    log_json: bool = True
    # Session tokens ("stay logged in on this device", SPEC A1).
    session_days: int = 90
    step_up_seconds: int = 300
    login_attempts: int = 5
    login_lockout_seconds: int = 300
    pin_attempts: int = 5
    pin_lockout_seconds: int = 900
    cors_origins: list[str] = Field(default_factory=list)
    # The app's terms of use and privacy statement (manual §7.8.4/7.8.5): an operator's own HTML page served at
    # /terms.html instead of the one shipped with Hipper (hipper/web/terms.html).
    terms_page: Path | None = None
    # HTTP hardening (docs/security.md "HTTP and API"). Request bodies longer than this are refused with a 413
    # while they are read (uploads declare their own limit).
    http_max_body_bytes: int = Field(256 * 1024, gt=0)
    # Connections (docs/security.md "Resources"): an HTTP connection with no request in progress is closed after
    # http_idle_seconds; one IP address holds at most http_max_connections_per_source (0: no limit — behind a
    # reverse proxy, where every connection comes from the proxy). Each user may keep events_max_streams_per_user
    # live-event streams open (a phone and a few browser tabs).
    # /metrics and the API documentation (/api/v1/docs, /api/v1/openapi.json): "loopback" — clients on the host
    # only, or anyone with http_operator_token as a bearer token; "token" — the token only; "open" — anyone.
    http_operator_access: Literal["loopback", "token", "open"] = "loopback"
    http_operator_token: str = ""
    http_idle_seconds: float = Field(60.0, gt=0)
    http_max_connections_per_source: int = Field(256, ge=0)
    events_max_streams_per_user: int = Field(10, gt=0)
    # How often a node looks for outbox events other nodes committed (live events, the notifier). On PostgreSQL
    # other nodes' commits wake it at once (LISTEN/NOTIFY); this poll is the backstop for a missed notification.
    events_poll_seconds: float = Field(1.0, gt=0)
    # The same for SIP over TCP and TLS: a connection must send a whole message within
    # sip_tcp_first_message_seconds and then one at least every sip_tcp_idle_seconds (CRLF keepalives do not
    # count; keep it above sip_max_expires, the longest registration refresh interval).
    sip_tcp_first_message_seconds: float = Field(32.0, gt=0)
    sip_tcp_idle_seconds: float = Field(3900.0, gt=0)
    sip_tcp_max_connections: int = Field(10_000, gt=0)
    sip_tcp_max_connections_per_source: int = Field(100, ge=0)
    # argon2 parameters; tests lower them to keep the suite fast.
    argon2_time_cost: int = 3
    argon2_memory_cost: int = 65536
    default_region: str = "NL"
    # Media engine (src/hipper/media): RTP sockets bind here; the advertised address goes into SDP (empty = bind
    # address); RTP/RTCP port pairs come from [rtp_port_min, rtp_port_max); no RTP for this long ends a call.
    media_bind_address: str = "127.0.0.1"
    media_advertised_address: str = ""
    rtp_port_min: int = 20000
    rtp_port_max: int = 30000
    rtp_timeout_seconds: float = 30.0
    # Call processing (src/hipper/apps). One ring lasts this long (manual §7.4.3: about 5 s; tests use 1 s).
    seconds_per_ring: int = 5
    # A branch that sends no provisional response within this time is given up (a phone that went away would
    # otherwise cost Timer B, 32 s).
    branch_provisional_seconds: float = 4.0
    # Anywhere's block diversion: an answer sooner than this after the INVITE is the mobile network's voicemail
    # (busy / not reachable), not a person, and is refused (engine/diversion_guard.py).
    block_diversion_min_answer_seconds: float = 3.0
    # Answer confirmation (simultaneous ring, Anywhere): an answer not confirmed with the key within this time is
    # released with BYE while the other branches keep ringing (domain/routing/confirmation.py).
    answer_confirmation_seconds: float = Field(default=10.0, gt=0)
    # Music on hold (live call control, apps/call_control.py): a WAV file (8 kHz mono 16-bit, looped); unset, the
    # built-in arpeggio (media/tones.py). Checked at start, so a bad file is a start-up error, not a silent hold.
    music_on_hold_file: Path | None = None
    # RFC 4028 session timers on calls (engine/leg.py): the interval we ask for and the smallest we accept
    # (a shorter Session-Expires is answered 422 with Min-SE). RFC 4028 allows no Min-SE below 90 s; tests use less.
    session_timers: bool = True
    session_expires_seconds: int = 1800
    session_min_se_seconds: int = 90
    # Alert-Info of a ring splash (forward always, do not disturb, the Personal Assistant's alert tone): the
    # convention most desk phones map to their splash ring (Bellcore GR-506 distinctive ring 5, e.g. Yealink's
    # "ring splash that reminds of DND or call forward"), then the RFC 7462 URNs for phones that render those.
    ring_splash_alert_info: str = (
        "<http://127.0.0.1/Bellcore-dr5>, <urn:alert:service:forward>, <urn:alert:duration:short>"
    )
    # Hunt groups and call centers (apps/groups.py, docs/call-routing.md), in rings of seconds_per_ring: how long
    # each member of a linear/circular group rings, how long a simultaneous group rings (0: until the caller hangs
    # up), how long each call-center agent is offered a call. A queued caller waits at most queue_max_wait_seconds
    # (then the call ends); after every free agent let the call ring out, they are offered it again after
    # queue_retry_seconds. While callers wait, the queue looks for agents who became free every
    # queue_poll_seconds (agent state lives in the database: any node's change counts), and tells them their place
    # in line again every queue_announce_seconds (0: only when they start waiting).
    hunt_member_rings: int = 3
    hunt_group_rings: int = 12
    queue_agent_rings: int = 3
    queue_max_wait_seconds: float = 300.0
    queue_retry_seconds: float = 5.0
    queue_poll_seconds: float = 1.0
    queue_announce_seconds: float = 30.0
    # The public network trunk and the mobile network as SIP peers, "udp:host:port" (empty: none configured).
    # Calls arriving from these addresses are not challenged; the trunk is trusted with P-Asserted-Identity.
    trunk_address: str = ""
    trunk_trusted: bool = True
    # Toll fraud (domain/barring.py, docs/security.md "Toll fraud"): the barring classes of a company without a
    # stored policy (premium, international, high_cost); concurrent outbound calls per user, per company and on
    # the trunk (0: unlimited; a company's or user's own limit, set by the administrator, replaces the default);
    # the status a user or company limit answers with (403 refused by policy, or 503 busy, retry later).
    outbound_barred_default: list[Literal["premium", "international", "high_cost"]] = ["premium", "high_cost"]
    outbound_max_calls_per_user: int = Field(4, ge=0)
    outbound_max_calls_per_company: int = Field(0, ge=0)
    trunk_max_calls: int = Field(0, ge=0)
    outbound_limit_status: Literal[403, 503] = 403
    mobile_network_address: str = ""
    # Prefix put before a user's mobile number when the exchange rings the handset, so the mobile network
    # delivers the call to the handset instead of routing it back into the exchange.
    mobile_routing_prefix: str = ""
    # Language of the prompts callers hear (nl or en).
    prompt_language: str = "nl"
    # Notifications (src/hipper/notify, docs/operations.md "Notifications"). E-mail is off while smtp_host is
    # empty. smtp_security: "starttls" (port 587), "tls" (implicit TLS, port 465) or "none" (a local relay).
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_from: str = ""  # empty: hipper@<sip_realm>
    smtp_timeout_seconds: float = 30.0
    # CA certificates (PEM) to trust for the SMTP server's certificate besides the system's, for a relay with a
    # private CA.
    smtp_ca_file: Path | None = None
    # A message that fails (server away, 4xx) is tried this many times in all, waiting retry seconds doubling.
    notify_email_attempts: int = 5
    notify_retry_seconds: float = 30.0
    # Times in e-mails and push messages are shown in this zone (users have no zone of their own yet).
    notify_time_zone: str = "Europe/Amsterdam"
    # Web Push (RFC 8030/8291/8292): the VAPID private key (PEM) is generated on first start; empty path means
    # <data_dir>/vapid-private.pem. The subject (mailto: or https:) is how push services contact the operator.
    vapid_private_key_file: Path | None = None
    vapid_subject: str = ""  # empty: mailto:hipper@<sip_realm>
    push_timeout_seconds: float = 10.0
    # How long a push service keeps a message for a device that is offline.
    push_ttl_seconds: int = 86400
    # WebAuthn passkeys (SPEC A2): the relying party id (a domain, never an IP address; empty = the host the app
    # was loaded from) and the origins whose assertions count (empty = the request's own origin + cors_origins).
    webauthn_rp_id: str = ""
    webauthn_origins: list[str] = Field(default_factory=list)
    # Media applications (src/hipper/apps: voicemail, recording, conference, MWI; docs/voicemail.md). A message
    # ends at hang-up, after this much silence, or at the maximum length.
    voicemail_max_seconds: float = 180.0
    voicemail_silence_seconds: float = 10.0
    # Dialled from one's own phone: one's mailbox without a PIN. The voicemail number (empty: none) is the same
    # service reached from outside through the trunk: mailbox (extension) + # then PIN + #.
    voicemail_access_code: str = "*86"
    voicemail_number: str = ""
    # Unsolicited message-summary NOTIFY (RFC 3842 §3) to registered phones that do not subscribe.
    mwi_unsolicited: bool = False
    mwi_subscription_seconds: int = 3600
    # Calls placed from the app "via the exchange" (SPEC D9): the number the user's mobile calls (empty: that
    # method is unavailable), and how long after the app's request such a call is connected to the number.
    call_access_number: str = ""
    call_access_seconds: float = 30.0
    # Housekeeping (docs/operations.md "Housekeeping"): outbox events (the `events` table behind live events, the
    # notifier and the call path's caches) are deleted once older than this, never before the notifier has read
    # them; `hipper serve` looks every `housekeeping_interval_seconds`, `hipper events purge` does it by hand.
    events_retention_days: float = Field(7.0, gt=0)
    housekeeping_interval_seconds: float = Field(3600.0, gt=0)

    @field_validator("sip_trusted_proxies")
    @classmethod
    def _proxy_addresses(cls, value: list[str]) -> list[str]:
        # Compared with the source address of each packet: a host name would never match.
        for host in value:
            try:
                ipaddress.ip_address(host)
            except ValueError:
                raise ValueError(f"not an IP address: {host!r}") from None
        return value

    @field_validator("trunk_address", "mobile_network_address")
    @classmethod
    def _no_outgoing_tls(cls, value: str) -> str:
        # Peers we send new requests to need connections we open; Hipper opens none over TLS (docs/operations.md).
        if value.lower().startswith("tls:"):
            raise ValueError("SIP peers over TLS are not supported (no outgoing TLS connections): use udp: or tcp:")
        return value

    def resolved_node_api_url(self) -> str:
        if self.node_api_url:
            return self.node_api_url.rstrip("/")
        host = "127.0.0.1" if self.http_host in ("0.0.0.0", "::", "") else self.http_host
        return f"http://[{host}]:{self.http_port}" if ":" in host else f"http://{host}:{self.http_port}"

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'hipper.db').resolve()}"


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    path = config_file or (Path(os.environ["HIPPER_CONFIG"]) if os.environ.get("HIPPER_CONFIG") else None)
    file_values: dict[str, Any] = {}
    if path is not None:
        with path.open("rb") as handle:
            file_values = tomllib.load(handle)
    env_settings = Settings()
    explicit_env = {
        name: getattr(env_settings, name) for name in Settings.model_fields if f"HIPPER_{name.upper()}" in os.environ
    }
    return Settings.model_validate({**file_values, **explicit_env, **overrides})
