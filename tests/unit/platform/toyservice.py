"""A toy service on the real platform, for testing the platform without the clinical services."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy import Engine, Integer, MetaData, String, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.auth import CurrentUser, roles_dep
from shared.clock import MovableClock
from shared.db import NAMING_CONVENTION, UnitOfWork, define_platform_tables
from shared.errors import Conflict, NotFound
from shared.events import CloudEvent
from shared.idempotency import IdempotencyDep
from shared.messaging.consumer import PermanentError, data_of
from shared.messaging.inproc import InProcessBus
from shared.pagination import Page, PageDep, paginate
from shared.runtime import ServiceRuntime, build_runtime
from shared.settings import Settings
from shared.web import UowDep, create_service_app

metadata = MetaData(naming_convention=NAMING_CONVENTION)
platform = define_platform_tables(metadata)


class Base(DeclarativeBase):
    metadata = metadata


class Widget(Base):
    __tablename__ = "widgets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    volume_ml: Mapped[int] = mapped_column(Integer)


class Seen(Base):
    __tablename__ = "seen"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(64))


class WidgetIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    volume_ml: int = Field(ge=0, le=30)


class WidgetOut(BaseModel):
    id: int
    name: str
    volume_ml: int


Nurse = roles_dep("nurse")
router = APIRouter()


def create_widget(*, uow: UnitOfWork, body: WidgetIn, actor: str) -> WidgetOut:
    if uow.session.scalar(select(Widget).where(Widget.name == body.name)) is not None:
        raise Conflict(f"widget {body.name!r} exists")
    widget = Widget(name=body.name, volume_ml=body.volume_ml)
    uow.session.add(widget)
    uow.session.flush()
    uow.audit(actor=actor, action="create", entity_type="widget", entity_id=str(widget.id),
              changes=body.model_dump())
    out = WidgetOut(id=widget.id, name=widget.name, volume_ml=widget.volume_ml)
    uow.publish_raw("toy.widget.created", out, subject=str(widget.id))
    return out


@router.post("/widgets", status_code=201)
def post_widget(body: WidgetIn, user: Nurse, uow: UowDep, idem: IdempotencyDep) -> Any:
    return idem.run(uow, body, lambda: create_widget(uow=uow, body=body, actor=user.sub))


@router.get("/widgets")
def list_widgets(_: CurrentUser, uow: UowDep, page: PageDep) -> Page[WidgetOut]:
    return paginate(uow.session, select(Widget), keys=[Widget.id], params=page,
                    to_item=lambda w: WidgetOut(id=w.id, name=w.name, volume_ml=w.volume_ml))


@router.get("/widgets/{widget_id}")
def get_widget(widget_id: int, _: CurrentUser, uow: UowDep) -> WidgetOut:
    w = uow.session.get(Widget, widget_id)
    if w is None:
        raise NotFound(f"no widget {widget_id}")
    return WidgetOut(id=w.id, name=w.name, volume_ml=w.volume_ml)


def on_widget(uow: UnitOfWork, event: CloudEvent) -> None:
    data = data_of(event)
    if data.get("name") == "poison":
        raise RuntimeError("handler failure")
    if data.get("name") == "impossible":
        raise PermanentError("impossible widget")
    WidgetOut.model_validate(data)
    uow.session.add(Seen(event_id=event.id))


def toy_runtime(tmp_path: Any, *, engine: Engine | None = None,
                bus: InProcessBus | None = None) -> ServiceRuntime:
    settings = Settings(env="test", consumer_max_attempts=3)
    engine = engine or create_engine(f"sqlite:///{tmp_path}/toy.db")
    metadata.create_all(engine)
    return build_runtime(name="toy", settings=settings, metadata=metadata, platform=platform,
                         clock=MovableClock(), bus=bus or InProcessBus(), engine=engine)


def toy_app(runtime: ServiceRuntime) -> Any:
    return create_service_app(runtime, [router], title="toy")
