"""Base class and shared pieces of every topic contract."""

from __future__ import annotations

from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION: Final = 1


class Contract(BaseModel):
    """A message value on a topic: frozen, strict about unknown fields, versioned."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    schema_version: Literal[1] = Field(
        SCHEMA_VERSION, description="Version of this contract; bumped with the topic's suffix."
    )

    def to_json_bytes(self) -> bytes:
        """The UTF-8 JSON encoding used on the wire."""
        return self.model_dump_json().encode()


StationId = int
station_field = Field(ge=0, le=9, description="Station id (the digit in mi0<S> file names).")
