"""Alerts's request and response shapes."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    field_validator,
    model_validator,
)

from services.alerts.channels import mask_address
from services.alerts.webhooks import secret_problem
from shared.contracts.alerts import AlertData, NotificationData
from shared.contracts.vocabulary import AlertKind
from shared.schemas import RequestModel
from shared.text import LINE_PATTERN, Centre, Code, Key, Line, Paragraph, text_rules

Channel = Literal["webhook", "email", "log", "apprise"]
MAX_FALLBACKS = 4
# a page's address: a URL, an email address or a log name, on one line
Address = Annotated[str, StringConstraints(min_length=1, max_length=500, pattern=LINE_PATTERN),
                    text_rules()]
# a day: an unacknowledged alert must reach the next level while it still matters (and the
# column is a 32-bit integer)
MAX_ESCALATION_DELAY_SECONDS = 24 * 3600
# a week: an acknowledged alert left unresolved must come back while it still matters
MAX_ACK_TIMEOUT_SECONDS = 7 * 24 * 3600


class TimelineEntry(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    at: AwareDatetime
    actor: str
    action: str
    details: dict[str, Any] = {}


class AlertRead(AlertData):
    """An alert (the contract's shape, plus who resolved it and whether a silence held its pages)."""

    model_config = ConfigDict(from_attributes=True)

    resolved_by: str | None = None
    silenced_by: str | None = None
    # the paused therapy holding its page (a warning of that therapy's pump), till it resumes
    held_by_therapy: str | None = None
    # when an acknowledged or snoozed alert, not resolved by then, fires again
    wake_at: AwareDatetime | None = None


class AlertDetail(AlertRead):
    """An alert with its timeline, oldest first."""

    timeline: list[TimelineEntry] = []


class AckIn(RequestModel):
    """`note`; `notification_id`: the page whose ack link was used (the dashboard passes the
    link's `n`): that page is acknowledged, besides the pages addressed to the acknowledging user."""

    model_config = ConfigDict(extra="forbid")

    note: Paragraph | None = None
    notification_id: Key | None = None


class SnoozeIn(RequestModel):
    """`until`: when the alert, still unresolved, fires again (future, bounded); `reason`."""

    model_config = ConfigDict(extra="forbid")

    until: AwareDatetime
    reason: Paragraph


class ResolveIn(RequestModel):
    model_config = ConfigDict(extra="forbid")

    resolution: Paragraph


class NotificationRead(NotificationData):
    """A page to one on-call member (status also `pending` or `sending` while under way,
    `cancelled` when the alert was acknowledged or resolved before it went out; after `sent` the
    recipient's read status: `delivered`, `seen`, `acknowledged`). Apprise addresses masked."""

    model_config = ConfigDict(from_attributes=True)

    address: str | None = None
    created_at: AwareDatetime | None = None
    next_attempt_at: AwareDatetime | None = None
    fallbacks: list[dict[str, str]] = []
    # which address took the page (0: `address`, n: fallbacks[n-1])
    sent_route: int | None = None
    delivered_at: AwareDatetime | None = None
    seen_at: AwareDatetime | None = None
    acknowledged_at: AwareDatetime | None = None
    # the page message that carried it (shared by the alerts a storm grouped into one page)
    message_id: str | None = None

    @field_validator("fallbacks", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return value or []

    @model_validator(mode="after")
    def _masked(self) -> NotificationRead:
        if self.address is not None:
            self.address = mask_address(self.channel, self.address)
        self.fallbacks = [{"channel": f["channel"], "address": mask_address(f["channel"], f["address"])}
                          for f in self.fallbacks]
        return self


class RouteIn(RequestModel):
    """One way to reach a member: a channel and its address (an apprise URL for `apprise`)."""

    model_config = ConfigDict(extra="forbid")

    channel: Channel
    address: Address

    @model_validator(mode="after")
    def _address_fits_channel(self) -> RouteIn:
        if self.channel == "webhook" and not self.address.startswith(("http://", "https://")):
            raise ValueError("a webhook address must be an http(s) URL")
        if self.channel == "email" and "@" not in self.address:
            raise ValueError("an email address needs an @")
        if self.channel == "apprise" and "://" not in self.address:
            raise ValueError("an apprise address is a URL (scheme://...)")
        return self


class MemberIn(RouteIn):
    """A member: `address` first, then each of `fallbacks` in order when the one before fails."""

    name: Line
    fallbacks: list[RouteIn] = Field(default=[], max_length=MAX_FALLBACKS)

    def routes(self) -> list[RouteIn]:
        """Every address, in the order they are tried."""
        return [RouteIn(channel=self.channel, address=self.address), *self.fallbacks]


class LevelIn(RequestModel):
    model_config = ConfigDict(extra="forbid")

    members: list[MemberIn] = Field(min_length=1)
    rotation_start: AwareDatetime
    # at least a minute: a shorter shift rounds to a zero timedelta and breaks the rotation
    shift_hours: float = Field(ge=1 / 60, le=24 * 366)


class OncallIn(RequestModel):
    model_config = ConfigDict(extra="forbid")

    escalation_delay_seconds: int = Field(default=900, ge=1, le=MAX_ESCALATION_DELAY_SECONDS)
    # an acknowledged alert not resolved after this fires again (absent: HAI_ACK_TIMEOUT_SECONDS)
    ack_timeout_seconds: int | None = Field(default=None, ge=60, le=MAX_ACK_TIMEOUT_SECONDS)
    levels: list[LevelIn] = Field(min_length=1, max_length=10)
    # signs the webhook pages (Standard Webhooks); absent: the current one is kept, or one made
    webhook_secret: SecretStr | None = Field(
        default=None, description="`whsec_` + base64 of 24 to 64 random bytes; never shown back")

    @field_validator("webhook_secret")
    @classmethod
    def _usable_secret(cls, value: SecretStr | None) -> SecretStr | None:
        problem = secret_problem(value.get_secret_value()) if value is not None else None
        if problem:
            raise ValueError(problem)
        return value


class OncallRead(BaseModel):
    """An on-call table; apprise addresses shown masked (a PUT must give them whole again)."""

    center: str
    escalation_delay_seconds: int
    ack_timeout_seconds: int | None = None
    levels: list[LevelIn]
    updated_at: AwareDatetime
    updated_by: str


class OncallSet(OncallRead):
    """The on-call table as set; `webhook_secret` only when this PUT generated it (shown once)."""

    webhook_secret: str | None = None


class ShiftRead(BaseModel):
    level: int
    name: str
    channel: Channel
    address: str
    shift_started_at: AwareDatetime
    shift_ends_at: AwareDatetime


class OncallNow(BaseModel):
    center: str
    at: AwareDatetime
    escalation_delay_seconds: int
    levels: list[ShiftRead]


class SilenceMatchers(RequestModel):
    model_config = ConfigDict(extra="forbid")

    kind: Code | None = None
    pump_serial: Code | None = None
    center: Centre | None = None

    @model_validator(mode="after")
    def _known_kind(self) -> SilenceMatchers:
        kinds = [k.value for k in AlertKind]
        if self.kind is not None and self.kind not in kinds:
            raise ValueError(f"unknown kind {self.kind!r}; one of {', '.join(kinds)}")
        return self


class SilenceIn(RequestModel):
    model_config = ConfigDict(extra="forbid")

    matchers: SilenceMatchers
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    reason: Paragraph

    @model_validator(mode="after")
    def _ends_after_start(self) -> SilenceIn:
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


class SilenceRead(BaseModel):
    id: str
    matchers: SilenceMatchers
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    reason: str
    created_by: str
    created_at: AwareDatetime
