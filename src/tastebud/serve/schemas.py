"""The request bodies of the service, as pydantic models, and the request limits they share with
the FastAPI routes and the fast path (declared once here, so every path checks the same)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    GetPydanticSchema,
    StrictInt,
    StrictStr,
    Tag,
    model_validator,
)
from pydantic_core import core_schema

MAX_ID = 256  # characters of a string id
MAX_K = 1000
DEFAULT_K = 10
MAX_MODEL_NAME = 64

# an id: a JSON integer or a string; one error message for both (not one per member of the union)
Id = Annotated[
    int | str,
    GetPydanticSchema(
        lambda _tp, _handler: core_schema.union_schema(
            [core_schema.int_schema(strict=True), core_schema.str_schema(strict=True, min_length=1, max_length=MAX_ID)],
            custom_error_type="id_type",
            custom_error_message=f"must be an integer or a string of 1 to {MAX_ID} characters",
        )
    ),
]
Finite = Annotated[float, Field(allow_inf_nan=False)]


class HistoryRequest(BaseModel):
    """A person not in the model, by the items they had (oldest first)."""

    model_config = ConfigDict(extra="forbid")
    items: list[Id] = Field(..., max_length=10_000, description="Item ids, oldest first.")
    values: list[Finite] | None = Field(None, description="Ratings or weights, one per item (1 when omitted).")
    timestamps: list[StrictInt] | None = Field(
        None, description="Unix seconds per item; the history is ordered by them."
    )
    k: int = Field(DEFAULT_K, ge=1, le=MAX_K)
    exclude_seen: bool = True
    context: dict[str, StrictStr | StrictInt] | None = Field(
        None, description="Demographics / context for the popularity path."
    )
    model: str | None = Field(None, description="Serve with this model instead of the policy.")
    candidates: list[Id] | None = Field(None, max_length=1_000_000, description="Restrict results to these items.")


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: Id
    item: Id
    value: Finite = 1.0
    timestamp: StrictInt | None = Field(None, description="Unix seconds (server time when omitted).")
    kind: Annotated[str, Field(max_length=64)] = "interaction"
    event_id: Annotated[str, Field(min_length=1, max_length=200)] | None = Field(
        None, description="Idempotency key: a retried event with the same key is stored once."
    )


class EventBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    events: list[EventIn] = Field(..., min_length=1)


# POST /events takes one event or a batch: the shape is chosen by the "events" key, so a malformed
# event gets one error naming its field instead of one per member of the union. The tags are left
# out of the error's location (the validation error handler in routes.py).
EVENT_SHAPES = ("event", "batch")
EventsBody = Annotated[
    Annotated[EventIn, Tag("event")] | Annotated[EventBatch, Tag("batch")],
    Discriminator(
        lambda v: ("batch" if "events" in v else "event") if isinstance(v, (dict, EventIn, EventBatch)) else None,
        custom_error_type="event_shape",
        custom_error_message='expected one event {"user": ID, "item": ID, ...} or a batch {"events": [...]}',
    ),
]

PAIR_SHAPE = 'each pair is {"user": ID, "item": ID} or [user, item]'


class Pair(BaseModel):
    """One (user, item) pair; ``[user, item]`` is read as ``{"user": user, "item": item}``."""

    model_config = ConfigDict(extra="forbid")
    user: Id
    item: Id

    @model_validator(mode="before")
    @classmethod
    def _from_list(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            if len(value) != 2:
                raise ValueError(f"{PAIR_SHAPE}; got a list of {len(value)}")
            return {"user": value[0], "item": value[1]}
        if not isinstance(value, dict):
            raise ValueError(f"{PAIR_SHAPE}; got {type(value).__name__}")
        return value


class PredictRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"pairs": [{"user": 1, "item": 50}, [1, 172]]}]}
    )
    pairs: list[Pair] = Field(
        ..., min_length=1, max_length=10_000, description='Pairs as {"user": ID, "item": ID} or [user, item].'
    )
    model: str | None = Field(None, description="Predict with this model (default: the first that predicts ratings).")


class ReloadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: str | None = Field(
        None,
        pattern=r"^v[0-9]{4,}$",
        max_length=32,
        description="Version name (v0001); default: the registry's CURRENT.",
    )


__all__ = [
    "DEFAULT_K",
    "EVENT_SHAPES",
    "MAX_ID",
    "MAX_K",
    "MAX_MODEL_NAME",
    "EventBatch",
    "EventIn",
    "EventsBody",
    "HistoryRequest",
    "Pair",
    "PredictRequest",
    "ReloadRequest",
]
