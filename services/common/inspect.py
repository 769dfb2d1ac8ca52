"""What landed in which topic: counts per topic and station, for the demo and operators."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from schemas.events import envelope_from_headers
from schemas.topics import EVENTS_RAW, REJECTS, TOPICS, TopicSpec
from services.common.kafka import read_all
from services.common.settings import KafkaSettings


@dataclass
class TopicSummary:
    """Committed messages of one topic, by station, with topic-specific detail."""

    topic: str
    messages: int = 0
    by_station: Counter[str] = field(default_factory=Counter)
    detail: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    example: str | None = None


def summarise_topic(kafka: KafkaSettings, spec: TopicSpec) -> TopicSummary:
    """Read a topic once and count what it holds."""
    summary = TopicSummary(spec.name)
    for message in read_all(kafka, spec.name, max_wait_s=300):
        summary.messages += 1
        if spec is EVENTS_RAW:
            envelope = envelope_from_headers(message.headers())
            summary.by_station[str(envelope.station)] += 1
            kind = "coincidence" if envelope.trigger_type == 1 else "self-trigger"
            events = summary.detail[f"station {envelope.station} events"]
            # both kinds always shown: "self-trigger 0" says the daily noise run was not seen
            events.setdefault("coincidence", 0)
            events.setdefault("self-trigger", 0)
            events[kind] += envelope.event_count
            continue
        record = json.loads(message.value())
        station = record.get("station")
        summary.by_station["-" if station is None else str(station)] += 1
        if spec is REJECTS:
            summary.detail[f"station {station} rejects"][record["reason"]] += 1
        elif summary.example is None:
            summary.example = message.value().decode()
    return summary


def summarise_topics(
    kafka: KafkaSettings, specs: tuple[TopicSpec, ...] = TOPICS
) -> list[TopicSummary]:
    """Summaries of every topic of the registry."""
    return [summarise_topic(kafka, spec) for spec in specs]
