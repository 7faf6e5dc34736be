"""The exchange's tables. Every user-owned row carries `user_id`; every query filters on it."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# SQLite autoincrements only INTEGER PRIMARY KEY; PostgreSQL gets BIGINT for the event log.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[Any]: JSON}


class Company(Base):
    __tablename__ = "companies"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    # The company's main number (SPEC A4 "company number").
    number: Mapped[str | None] = mapped_column(String(32), unique=True)
    night_mode: Mapped[bool] = mapped_column(Boolean, default=False)
    # Where the company number rings by day / by night: a user extension or a number.
    day_destination: Mapped[str | None] = mapped_column(String(32))
    night_destination: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Group(Base):
    """A department inside a company; its number is the users' "department number"."""

    __tablename__ = "groups"
    __table_args__ = (UniqueConstraint("company_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    number: Mapped[str | None] = mapped_column(String(32), unique=True)
    day_destination: Mapped[str | None] = mapped_column(String(32))
    night_destination: Mapped[str | None] = mapped_column(String(32))


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int | None] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"), index=True)
    group_id: Mapped[int | None] = mapped_column(ForeignKey("groups.id", ondelete="SET NULL"), index=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20), default="user")  # user | admin
    first_name: Mapped[str] = mapped_column(String(100), default="")
    last_name: Mapped[str] = mapped_column(String(100), default="")
    email: Mapped[str | None] = mapped_column(String(200))
    extension: Mapped[str | None] = mapped_column(String(10))
    direct_number: Mapped[str | None] = mapped_column(String(32), unique=True)
    mobile_number: Mapped[str | None] = mapped_column(String(32), unique=True)
    licences: Mapped[list[Any]] = mapped_column(JSON, default=list)
    pin_hash: Mapped[str | None] = mapped_column(String(200))
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    failed_pins: Mapped[int] = mapped_column(Integer, default=0)
    pin_locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (UniqueConstraint("company_id", "extension"),)


class AuthSession(Base):
    __tablename__ = "auth_sessions"
    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    device_name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    step_up_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WebAuthnCredential(Base):
    __tablename__ = "webauthn_credentials"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    credential_id: Mapped[str] = mapped_column(String(400), unique=True)
    public_key: Mapped[str] = mapped_column(Text)
    sign_count: Mapped[int] = mapped_column(Integer, default=0)
    name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ServiceSetting(Base):
    """One row per (user, service): the service's settings document, validated by the domain model."""

    __tablename__ = "service_settings"
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    service: Mapped[str] = mapped_column(String(60), primary_key=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SipDevice(Base):
    """A SIP device of a user; digest credentials are kept as HA1 hashes for the exchange's realm."""

    __tablename__ = "sip_devices"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    auth_username: Mapped[str] = mapped_column(String(100), unique=True)
    realm: Mapped[str] = mapped_column(String(200))
    ha1_md5: Mapped[str] = mapped_column(String(64))
    ha1_sha256: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(20), default="desk")  # desk | softphone
    name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Registration(Base):
    """User location (RFC 3261 §10): where a device can be reached, and where it registered from."""

    __tablename__ = "registrations"
    __table_args__ = (UniqueConstraint("device_id", "contact"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("sip_devices.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    contact: Mapped[str] = mapped_column(String(500))
    source: Mapped[str] = mapped_column(String(100))  # transport:host:port it really came from
    call_id: Mapped[str] = mapped_column(String(200))
    cseq: Mapped[int] = mapped_column(Integer)
    user_agent: Mapped[str] = mapped_column(String(200), default="")
    node: Mapped[str] = mapped_column(String(100), default="")
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class CallCenter(Base):
    __tablename__ = "call_centers"
    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    number: Mapped[str | None] = mapped_column(String(32), unique=True)
    extension: Mapped[str | None] = mapped_column(String(10))
    wrap_up_seconds: Mapped[int] = mapped_column(Integer, default=30)
    members: Mapped[list[CallCenterMember]] = relationship(cascade="all, delete-orphan", lazy="raise")


class CallCenterMember(Base):
    __tablename__ = "call_center_members"
    call_center_id: Mapped[int] = mapped_column(ForeignKey("call_centers.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    # The user joins or leaves the queue (SPEC J3); membership itself is the administrator's.
    joined: Mapped[bool] = mapped_column(Boolean, default=True)


class CallCenterCall(Base):
    """A call that entered a call center's queue, on the node that carries it (apps/groups.py): while `state` is
    not `ended` it is a waiting caller every node counts (order: `id`), and the row is the queue's statistics
    afterwards (`outcome`). The agent it offers or connected holds them: the partial unique index lets the database
    refuse a second node's claim on the same agent, whatever the races (store/group_calls.py `claim_agent`)."""

    __tablename__ = "call_center_calls"
    __table_args__ = (
        Index("ix_call_center_calls_center_state", "call_center_id", "state"),
        Index("ux_call_center_calls_one_per_agent", "agent_user_id", unique=True,
              sqlite_where=text("state IN ('offering', 'connected')"),
              postgresql_where=text("state IN ('offering', 'connected')")),
    )  # fmt: skip
    id: Mapped[int] = mapped_column(primary_key=True)
    call_center_id: Mapped[int] = mapped_column(ForeignKey("call_centers.id", ondelete="CASCADE"))
    node_id: Mapped[str] = mapped_column(String(100), index=True)
    call_id: Mapped[str] = mapped_column(String(200), default="")
    caller_number: Mapped[str] = mapped_column(String(64), default="")
    caller_name: Mapped[str] = mapped_column(String(200), default="")
    entered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # waiting | offering | exhausted | connected | ended
    state: Mapped[str] = mapped_column(String(12), default="waiting")
    agent_user_id: Mapped[int | None] = mapped_column(Integer)  # offered (offering), talking (connected), answered
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    outcome: Mapped[str] = mapped_column(String(40), default="")  # answered | abandoned | gave_up | refused | lost: …


class HuntGroup(Base):
    __tablename__ = "hunt_groups"
    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    number: Mapped[str | None] = mapped_column(String(32), unique=True)
    extension: Mapped[str | None] = mapped_column(String(10))
    policy: Mapped[str] = mapped_column(String(20), default="simultaneous")  # simultaneous | circular | linear
    member_user_ids: Mapped[list[Any]] = mapped_column(JSON, default=list)


class DirectoryEntry(Base):
    """Enterprise phone list (user_id NULL) or a user's personal phone list (user_id set)."""

    __tablename__ = "directory_entries"
    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    first_name: Mapped[str] = mapped_column(String(100), default="")
    last_name: Mapped[str] = mapped_column(String(100), default="")
    company_name: Mapped[str] = mapped_column(String(200), default="")
    number: Mapped[str] = mapped_column(String(32))
    email: Mapped[str | None] = mapped_column(String(200))


class CallLog(Base):
    __tablename__ = "call_logs"
    __table_args__ = (Index("ix_call_logs_user_started", "user_id", "started_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    call_id: Mapped[str] = mapped_column(String(200), default="")
    direction: Mapped[str] = mapped_column(String(10))  # placed | received | missed
    remote_number: Mapped[str] = mapped_column(String(64), default="")
    remote_name: Mapped[str] = mapped_column(String(200), default="")
    local_identity: Mapped[str] = mapped_column(String(64), default="")
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    outcome: Mapped[str] = mapped_column(String(40), default="")
    plan: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class Voicemail(Base):
    __tablename__ = "voicemails"
    __table_args__ = (Index("ix_voicemails_user_received", "user_id", "received_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    caller_number: Mapped[str] = mapped_column(String(64), default="")
    caller_name: Mapped[str] = mapped_column(String(200), default="")
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    heard: Mapped[bool] = mapped_column(Boolean, default=False)
    media_path: Mapped[str] = mapped_column(String(500))  # relative to the data directory


class Greeting(Base):
    __tablename__ = "greetings"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    # The greeting callers hear when the user does not answer (and for every hand-off that is not "busy":
    # all calls to voicemail, not reachable, after the Personal Assistant). At most one per user.
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    # The greeting callers hear when the user is busy; without one they hear the `active` one (migration 0005).
    active_busy: Mapped[bool] = mapped_column(Boolean, default=False)
    media_path: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # The database itself refuses a second active greeting of a kind, whatever races the application has
    # (migrations 0002 and 0005).
    __table_args__ = (
        Index("ux_greetings_one_active", "user_id", unique=True,
              sqlite_where=text("active"), postgresql_where=text("active")),
        Index("ux_greetings_one_active_busy", "user_id", unique=True,
              sqlite_where=text("active_busy"), postgresql_where=text("active_busy")),
    )  # fmt: skip


class Recording(Base):
    __tablename__ = "recordings"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    call_id: Mapped[str] = mapped_column(String(200), default="")
    remote_number: Mapped[str] = mapped_column(String(64), default="")
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    media_path: Mapped[str] = mapped_column(String(500))


class PushSubscription(Base):
    __tablename__ = "push_subscriptions"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    endpoint: Mapped[str] = mapped_column(String(1000), unique=True)
    p256dh: Mapped[str] = mapped_column(String(200))
    auth: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Event(Base):
    """The outbox: written in the same transaction as the change, published after the commit."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_user_id_id", "user_id", "id"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    company_id: Mapped[int | None] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(60))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class NotificationCursor(Base):
    """How far a reader of the outbox got (hipper.notify): restarts resume there, and because it is advanced
    with a compare-and-set, two nodes never claim the same events (so nobody is notified twice)."""

    __tablename__ = "notification_cursors"
    name: Mapped[str] = mapped_column(String(60), primary_key=True)
    last_event_id: Mapped[int] = mapped_column(BigInteger)


class WebAuthnChallenge(Base):
    """The one pending WebAuthn challenge of a login session per purpose: single use and short-lived, kept in
    the database so any node of the exchange can verify the browser's answer."""

    __tablename__ = "webauthn_challenges"
    auth_session_id: Mapped[int] = mapped_column(ForeignKey("auth_sessions.id", ondelete="CASCADE"), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(20), primary_key=True)  # register | step_up
    challenge: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class HuntGroupRotation(Base):
    """Where a circular hunt group starts next: the member who took its last call (apps/groups.py)."""

    __tablename__ = "hunt_group_rotations"
    hunt_group_id: Mapped[int] = mapped_column(ForeignKey("hunt_groups.id", ondelete="CASCADE"), primary_key=True)
    last_user_id: Mapped[int | None] = mapped_column(Integer)


class Node(Base):
    """An exchange process sharing the database, and how long its word counts (store/presence.py): each node
    renews its lease every few seconds; what a node whose lease ran out left behind is ignored and purged."""

    __tablename__ = "nodes"
    node_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    lease_until: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    # Where the other nodes reach this node's API: call control asked of another node for a call this one carries
    # is forwarded here (api/forwarding.py). None: a node that takes no forwarded requests.
    api_url: Mapped[str | None] = mapped_column(String(300))


class ActiveCall(Base):
    """A user on an answered call, on the node that carries it (store/presence.py): the "on a call" input of
    routing (busy, call waiting) for every node. Written when the call is answered, deleted when it ends. A
    `ringing` row is an incoming call still ringing the user (written once it has rung a moment, apps/click_to_dial
    `AppCalls.ringing`): not busy, but listed and controllable through every node."""

    __tablename__ = "active_calls"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # made by the node: its delete needs no read
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    call_id: Mapped[str] = mapped_column(String(200))
    node_id: Mapped[str] = mapped_column(String(100), index=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ringing: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class LiveCallback(Base):
    """A callback (apps/click_to_dial.py) under way on the node that runs it, from its start (ringing the user)
    to its end: any node lists it and forwards control of it there. While it rings (`ringing`: until both ends
    answered) it is the user's only one: a unique index over the ringing rows refuses a second, on any node."""

    __tablename__ = "callbacks"
    __table_args__ = (
        Index(
            "ix_callbacks_one_ringing",
            "user_id",
            unique=True,
            sqlite_where=text("ringing"),
            postgresql_where=text("ringing"),
        ),
    )
    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # the callback's id in GET /me/calls
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    node_id: Mapped[str] = mapped_column(String(100), index=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ringing: Mapped[bool] = mapped_column(Boolean, default=True)


class MwiSubscription(Base):
    """A phone's message-summary subscription (apps/mwi.py), held by the node whose dialog it is: whether a user's
    phones subscribed on any node decides whether unsolicited NOTIFYs go out. Counts while its node's lease runs
    and until it expires; rows of dead nodes are purged with their calls (store/active_calls.py)."""

    __tablename__ = "mwi_subscriptions"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # made by the node
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    node_id: Mapped[str] = mapped_column(String(100), index=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CallAccessArm(Base):
    """A call "via the exchange" the app announced (apps/click_to_dial.py): the user's mobile may call the access
    number until `expires_at`, through any node, and is connected to `destination`. One per user, used once."""

    __tablename__ = "call_access_arms"
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    destination: Mapped[str] = mapped_column(String(64))
    identity: Mapped[dict[str, Any]] = mapped_column(JSON)  # the CallerIdentity the call goes out with
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class OutboundPolicy(Base):
    """Call barring and the concurrent outbound-call limit of one company (``user_id`` null) or one user
    (``company_id`` null), set by the administrator (domain/barring.py, docs/security.md "Toll fraud")."""

    __tablename__ = "outbound_policies"
    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int | None] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"), unique=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    barred: Mapped[list[Any]] = mapped_column(JSON, default=list)  # barring class names
    barred_prefixes: Mapped[list[Any]] = mapped_column(JSON, default=list)  # E.164 prefixes, "+3190"
    max_calls: Mapped[int | None] = mapped_column(Integer)  # null: the exchange's default limit


# Readers that follow some event types from a cursor (`type IN (…) AND id > cursor`); migration 0005_apiperf.
Index("ix_events_type_id", Event.type, Event.id)
