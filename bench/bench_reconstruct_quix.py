"""What a Quix Streams port of reconstruct would pay for its state: measured on the raw topic.

The reconstruct service needs a file's chunks together (calibration pool and outlier seconds are
per file), so a Quix port must keep every chunk of a file still arriving in the state store until
the file is complete: each chunk written to RocksDB and to the changelog topic, in the Kafka
transaction of its checkpoint, and deleted once its file is done. This script reads the raw topic
three ways, each to its end, and prints events/s from the first chunk to the last:

* ``plain``: a read_committed confluent-kafka consumer decoding every chunk (the loop's reading);
* ``quix``: a Quix Streams application, exactly-once, decoding every chunk, no state;
* ``quix-state``: the same with a stateful step that keeps each chunk's payload in the station's
  state until all its file's chunks are in (what the port's pending files need at least).

    python bench/bench_reconstruct_quix.py --bootstrap 127.0.0.1:31092   # raw topic filled
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from confluent_kafka import Consumer
from quixstreams import Application
from quixstreams.state.rocksdb import RocksDBOptions

from schemas.events import envelope_from_headers
from schemas.topics import EVENTS_RAW
from services.reconstruct.stream import chunk_from_message

_IDLE_S = 5.0  #: a run ends after this long without a message [s]


def plain(bootstrap: str, topic: str) -> tuple[int, int, float]:
    """(chunks, events, seconds from the first to the last chunk), read_committed consumer."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-plain-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
        }
    )
    consumer.subscribe([topic])
    chunks = events = 0
    first = last = time.perf_counter()
    while time.perf_counter() - last < _IDLE_S + 10 * (chunks == 0):  # the group join first
        for message in consumer.consume(64, 0.5):
            if message.error() is not None:
                continue  # partition EOF
            chunk = chunk_from_message(envelope_from_headers(message.headers()), message.value())
            if not chunks:
                first = time.perf_counter()
            chunks += 1
            events += len(chunk.time_s)
            last = time.perf_counter()
    consumer.close()
    return chunks, events, last - first


def quix(bootstrap: str, topic_name: str, stateful: bool) -> tuple[int, int, float]:
    """(chunks, events, seconds from the first to the last chunk), Quix exactly-once app."""
    counts = {"chunks": 0, "events": 0}
    stamps = {"first": 0.0, "last": 0.0}
    app = Application(
        broker_address=bootstrap,
        consumer_group=f"bench-quix-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        processing_guarantee="exactly-once",
        commit_interval=2.0,
        state_dir=Path(tempfile.mkdtemp(prefix="bench-quix-state-")),
        rocksdb_options=RocksDBOptions(dumps=pickle.dumps, loads=pickle.loads),
        loglevel=None,
    )
    topic = app.topic(topic_name, key_deserializer="str", value_deserializer="bytes")

    def decode(value: bytes, _key: Any, _ts: int, headers: Any) -> Any:
        envelope = envelope_from_headers(headers)
        chunk = chunk_from_message(envelope, value)
        counts["chunks"] += 1
        counts["events"] += len(chunk.time_s)
        stamps["first"] = stamps["first"] or time.perf_counter()
        stamps["last"] = time.perf_counter()
        return envelope, value

    def keep(item: Any, _key: Any, _ts: int, _headers: Any, state: Any) -> None:
        envelope, value = item
        state.set(f"chunk/{envelope.source_file}/{envelope.chunk_index}", value)
        have = state.get(f"have/{envelope.source_file}", 0) + 1
        if have < envelope.chunk_count:
            state.set(f"have/{envelope.source_file}", have)
            return
        for index in range(envelope.chunk_count):  # the file is complete: read back, forget
            state.get(f"chunk/{envelope.source_file}/{index}")
            state.delete(f"chunk/{envelope.source_file}/{index}")
        state.delete(f"have/{envelope.source_file}")

    frame = app.dataframe(topic).apply(decode, metadata=True)
    if stateful:
        frame = frame.apply(keep, stateful=True, metadata=True)
    app.run(timeout=_IDLE_S, collect=False)
    # the last checkpoint (changelog flush, transaction commit) happens after the idle wait
    closing = time.perf_counter() - stamps["last"] - _IDLE_S
    return counts["chunks"], counts["events"], stamps["last"] - stamps["first"] + max(closing, 0)


def fill(bootstrap: str, topic: str) -> None:
    """A fresh ``topic`` (the raw topic's partitions) holding one simulated 8 Hz station-day."""
    from bench_reconstruct import simulated_events
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    from schemas.topics import station_key

    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.delete_topics([topic])
    time.sleep(2)
    new = NewTopic(topic, EVENTS_RAW.partitions, 1, config={"max.message.bytes": "8388608"})
    admin.create_topics([new])[topic].result(30)
    messages = simulated_events(8.0, 2048)[3]
    producer = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 8388608})
    for m in messages:
        producer.produce(topic, m.value, station_key(0), headers=m.headers)
        producer.poll(0)
    producer.flush(60)
    sys.stdout.write(f"filled {topic} with {len(messages)} chunks\n")


def main() -> None:
    """Run the three readings, interleaved ``--repeat`` times, and print them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default=os.environ.get("MINGO_KAFKA_BOOTSTRAP", ""))
    parser.add_argument("--topic", default=EVENTS_RAW.name, help="raw event topic to read")
    parser.add_argument(
        "--fill",
        action="store_true",
        help="first fill --topic with bench_reconstruct.py's simulated 8 Hz station-day chunks",
    )
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    out = sys.stdout.write
    out(f"load average before: {os.getloadavg()}\n")
    if args.fill:
        fill(args.bootstrap, args.topic)
    for run in range(args.repeat):
        for label, reader in (
            ("plain", lambda: plain(args.bootstrap, args.topic)),
            ("quix", lambda: quix(args.bootstrap, args.topic, False)),
            ("quix-state", lambda: quix(args.bootstrap, args.topic, True)),
        ):
            chunks, events, seconds = reader()
            out(f"run {run + 1} {label:10s} {chunks} chunks, {events} events in {seconds:.2f} s:")
            out(f" {events / seconds / 1e6:.3f} M events/s (load {os.getloadavg()[0]:.1f})\n")


if __name__ == "__main__":
    main()
