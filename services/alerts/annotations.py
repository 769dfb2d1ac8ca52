"""Alerts as InfluxDB points (measurement ``alerts``) that Grafana shows as annotations.

Encoded with the sink's line-protocol encoder. Tags: ``station`` (the id, or ``network``),
``kind``, ``severity``; fields: ``title``, ``text``, ``alert_id``, ``end_s`` (0 while ongoing),
``detected_s`` and one ``ev_<name>`` float per evidence value. The point's time is the alert's
start, so a re-emitted alert (later end, new evidence) overwrites its point.
"""

from __future__ import annotations

from typing import Any, Final

from schemas.models import Alert
from services.sink.lineprotocol import FieldKind, encode_point

#: Measurement of the alert annotations.
ALERTS_MEASUREMENT: Final = "alerts"


def encode_alert(alert: Alert) -> str | None:
    """The line of one alert."""
    values: dict[str, Any] = {
        "station": "network" if alert.station is None else str(alert.station),
        "kind": alert.kind,
        "severity": alert.severity,
        "title": f"{alert.kind} ({alert.severity})",
        "text": alert.message,
        "alert_id": alert.alert_id,
        "end_s": int(alert.end.timestamp()) if alert.end else 0,
        "detected_s": int(alert.detected.timestamp()),
        "stations": ",".join(str(s) for s in alert.stations),
    }
    kinds = {
        "station": FieldKind.TAG,
        "kind": FieldKind.TAG,
        "severity": FieldKind.TAG,
        "title": FieldKind.STRING,
        "text": FieldKind.STRING,
        "alert_id": FieldKind.STRING,
        "end_s": FieldKind.INT,
        "detected_s": FieldKind.INT,
        "stations": FieldKind.STRING,
    }
    for name, value in alert.evidence.items():
        values[f"ev_{name}"] = value
        kinds[f"ev_{name}"] = FieldKind.FLOAT
    return encode_point(ALERTS_MEASUREMENT, values, kinds, timestamp_s=int(alert.start.timestamp()))
