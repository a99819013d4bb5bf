"""The streaming, vectorised generator (issue #14): a day at a time, and byte for byte the files
the per-event generator it replaced wrote for the same seed."""

import dataclasses
import datetime as dt
import gc
import hashlib
import sys
import tracemalloc
import weakref
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from churn_platform.logs.landing_zone import LandingZone
from churn_platform.storage.files import write_bytes_atomic
from churn_platform.synthetic import generator, writer
from churn_platform.synthetic.generator import PURCHASE, events_to_jsonl, generate, iter_days
from churn_platform.synthetic.writer import write_generated
from churn_platform_tests.synthetic import reference_generator as reference

Case = tuple[dt.date, int, int, int, int | None]  # start, days, customers, seed, horizon_days

# A year boundary and weekends; a horizon past the last day (`generate --append-day`); a tiny one.
# TIES holds events of one customer in the same second whose lines differ, so the comparison
# covers the order of ties (the old generator's stable sort), not only the order of distinct times.
TIES: Case = (dt.date(2025, 12, 25), 9, 2000, 12345, None)
CASES: list[Case] = [TIES, (dt.date(2026, 3, 1), 20, 300, 3, 45), (dt.date(2026, 1, 1), 10, 50, 1, None)]

# SHA-256 over the landed files and the ticket export (see `_digest`), computed with the per-event
# generator before it was replaced. Unlike the reference copy, they cannot drift along with a
# change to numpy's random streams. README_AUC is the size and seed of the README's AUC figure
# (419,032 events: too many for the reference copy in a test).
README_AUC: Case = (dt.date(2026, 1, 1), 120, 1000, 7, None)
GOLDEN: dict[Case, str] = {
    README_AUC: "913851eb7df8a8b391626cd8921bdf214182ec24ef4ee62f46ea463e2a5c1df0",
    (dt.date(2026, 3, 1), 20, 300, 3, 45): "350910d8b8e9cf67cb8bb769ef34b9d752449f2da02927fe7a7bb30585b957fe",
    TIES: "a2cef38d58fc0c1180fbf49def499e35363f30ef1a1902f8f54ac76ef571e0d9",
}


def _land(root: Path, case: Case) -> dict[str, int]:
    start, days, customers, seed, horizon = case
    return write_generated(
        iter_days(start, days, customers, seed, horizon_days=horizon),
        LandingZone(base_path=str(root / "landing")),
        str(root / "crm" / "tickets.jsonl"),
    )


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _digest(root: Path) -> str:
    digest = hashlib.sha256()
    for name, content in _files(root).items():
        digest.update(name.encode() + b"\0" + content + b"\0")
    return digest.hexdigest()


def _first_difference(old: bytes, new: bytes) -> str:
    for number, (a, b) in enumerate(zip(old.splitlines(), new.splitlines(), strict=False), start=1):
        if a != b:
            return f"line {number}:\n  old {a!r}\n  new {b!r}"
    return f"lengths differ: {len(old.splitlines())} old lines, {len(new.splitlines())} new"


def _differing_ties(data: reference.GeneratedData) -> int:
    """Events of one customer in the same second, next to each other, whose lines differ."""
    count = 0
    for day in data.event_days:
        lines = reference.events_to_jsonl(day.events).splitlines()
        keys = list(zip(day.events.customer_id, day.events.timestamp, strict=True))
        count += sum(keys[i] == keys[i - 1] and lines[i] != lines[i - 1] for i in range(1, len(keys)))
    return count


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}x{c[1]}d-{c[2]}c-seed{c[3]}-h{c[4]}")
def test_landed_files_are_byte_identical_to_the_per_event_generator(tmp_path, case):
    start, days, customers, seed, horizon = case
    old = reference.generate(start, days, customers, seed, horizon_days=horizon)
    old_stats = reference.write_generated(
        old,
        LandingZone(base_path=str(tmp_path / "old" / "landing")),
        str(tmp_path / "old" / "crm" / "tickets.jsonl"),
    )
    new_stats = _land(tmp_path / "new", case)

    old_files, new_files = _files(tmp_path / "old"), _files(tmp_path / "new")
    assert list(new_files) == list(old_files)
    assert len(old_files) == 2 * days + 1  # am and pm per day, and the export
    for name, content in old_files.items():
        assert new_files[name] == content, f"{name}: {_first_difference(content, new_files[name])}"
    assert new_stats == old_stats
    if case == TIES:
        assert _differing_ties(old) > 0


def test_in_memory_data_are_the_per_event_generators():
    """``generate`` (the stream collected) gives the frames, customers and tickets it always gave."""
    start, days, customers, seed, horizon = CASES[1]
    old = reference.generate(start, days, customers, seed, horizon_days=horizon)
    new = generate(start, days, customers, seed, horizon_days=horizon)
    pd.testing.assert_frame_equal(new.customers, old.customers)
    assert new.tickets == old.tickets
    assert [d.date for d in new.event_days] == [d.date for d in old.event_days]
    for new_day, old_day in zip(new.event_days, old.event_days, strict=True):
        pd.testing.assert_frame_equal(new_day.events, old_day.events)


@pytest.mark.parametrize("case", list(GOLDEN), ids=lambda c: f"{c[0]}x{c[1]}d-{c[2]}c-seed{c[3]}")
def test_landed_files_match_the_digests_of_the_per_event_generator(tmp_path, case):
    _land(tmp_path, case)
    assert _digest(tmp_path) == GOLDEN[case]


def test_the_stream_holds_one_day_at_a_time():
    stream = iter_days(dt.date(2026, 1, 1), days=4, customers=300, seed=2)
    assert len(stream.customers) == 300  # known before any day is drawn
    with pytest.raises(RuntimeError, match="once every day"):
        stream.tickets  # noqa: B018 (the property raises)
    days = iter(stream)
    first = next(days)
    first_date, gone = first.date, weakref.ref(first)
    del first
    second = next(days)
    gc.collect()
    assert gone() is None, "the stream keeps a day it has yielded"
    assert second.date == first_date + dt.timedelta(days=1)
    assert len(list(days)) == 2
    assert stream.tickets and all(t["updated_at"] < "2026-01-05" for t in stream.tickets)
    assert stream.ticket_count == len(stream.tickets)
    with pytest.raises(RuntimeError, match="iterated once"):
        iter(stream)


def test_memory_does_not_grow_with_the_number_of_days():
    """Peak memory of generating and encoding 60 days is that of 5 days, but for the tickets'
    lines (tracemalloc sees numpy's arrays and the files' bytes; Arrow's scratch buffers, a day's
    worth, are not traced). Keeping every day would add ~10 MB here."""

    def peak(days: int) -> tuple[int, int]:
        tracemalloc.start()
        try:
            stream = iter_days(dt.date(2026, 1, 1), days, customers=2000, seed=1)
            for day in stream:
                day.to_jsonl()
            return tracemalloc.get_traced_memory()[1], sys.getsizeof(stream._ticket_lines)
        finally:
            tracemalloc.stop()

    peak(2)  # the module's caches (the fixed pieces of text) are built once per process
    short, _ = peak(5)
    long, tickets = peak(60)
    assert long - tickets < 1.2 * short, (short, long, tickets)


def test_generate_is_the_stream_collected():
    collected = generate(dt.date(2026, 1, 1), days=5, customers=400, seed=9)
    stream = iter_days(dt.date(2026, 1, 1), days=5, customers=400, seed=9)
    for streamed, kept in zip(stream, collected.event_days, strict=True):
        assert streamed.to_jsonl() == kept.to_jsonl()
        assert streamed.to_jsonl() == events_to_jsonl(kept.events).encode()
    assert stream.tickets == collected.tickets


def test_generated_data_and_the_stream_land_the_same_files(tmp_path):
    """write_generated takes both; tests and benchmarks pass ``generate``'s GeneratedData."""
    case: Case = (dt.date(2026, 1, 1), 4, 300, 6, None)
    streamed = _land(tmp_path / "stream", case)
    start, days, customers, seed, _ = case
    collected = write_generated(
        generate(start, days, customers, seed),
        LandingZone(base_path=str(tmp_path / "data" / "landing")),
        str(tmp_path / "data" / "crm" / "tickets.jsonl"),
    )
    assert collected == streamed
    assert _files(tmp_path / "data") == _files(tmp_path / "stream")


def test_only_days_draws_every_day_but_writes_only_those(tmp_path):
    """`generate --append-day` writes just the new day, which must be the day a full write lands."""
    case: Case = (dt.date(2026, 3, 1), 6, 200, 4, 30)
    full = _land(tmp_path / "full", case)
    start, days, customers, seed, horizon = case
    zone = LandingZone(base_path=str(tmp_path / "one" / "landing"))
    stats = write_generated(
        iter_days(start, days, customers, seed, horizon_days=horizon),
        zone,
        str(tmp_path / "one" / "crm" / "tickets.jsonl"),
        only_days={"2026-03-04"},
    )
    one = _files(tmp_path / "one")
    day_files = [name for name in one if "interaction_logs" in name]
    assert sorted(day_files) == [
        f"landing/interaction_logs/date=2026-03-04/events-{half}.jsonl" for half in ("am", "pm")
    ]
    everything = _files(tmp_path / "full")
    assert all(one[name] == everything[name] for name in one)
    assert stats == {**full, "landing_files": 2}


def test_a_failed_write_stops_the_run_and_is_raised(tmp_path, monkeypatch):
    """Files are written by a background thread; its first failure still surfaces from
    write_generated, soon (not after generating every other day), and no export follows."""
    written = []

    def failing(path, data):
        written.append(path.name)
        if len(written) == 3:
            raise OSError("No space left on device")
        write_bytes_atomic(path, data)

    monkeypatch.setattr(writer, "write_bytes_atomic", failing)
    with pytest.raises(OSError, match="No space left"):
        _land(tmp_path, (dt.date(2026, 1, 1), 30, 100, 1, None))
    assert 3 <= len(written) <= 3 + writer.FILES_IN_FLIGHT
    assert not (tmp_path / "crm").exists()


def test_amounts_are_written_as_json_dumps_writes_them(monkeypatch):
    """Every purchase amount in the vectorised path is json.dumps' (shortest round-trip repr) of
    the float rounded to cents, across the whole range of cents; amounts it has no ready-made text
    for fall back to json.dumps itself."""
    day = next(iter(iter_days(dt.date(2026, 1, 6), days=1, customers=5_000, seed=1)))
    rng = np.random.default_rng(0)
    amounts = np.concatenate(
        [
            [0.0, 0.01, 0.05, 0.1, 0.5, 0.99, 1.0, 9.9, 10.0, 99.95, 100.1, 1234.5, 9999.99],
            np.arange(0, 10_000) / 100,  # every number of cents, and whole units up to 99
            np.round(rng.lognormal(mean=3.0, sigma=0.6, size=len(day)), 2),
        ]
    )[: len(day)]
    purchases = dataclasses.replace(day, event_type=np.full(len(day), PURCHASE, np.int8), amount=amounts)

    def no_fallback(_events):
        raise AssertionError("amounts in range must not take the json.dumps path")

    with monkeypatch.context() as patched:
        patched.setattr(generator, "events_to_jsonl", no_fallback)
        fast = purchases.to_jsonl()
    assert fast == events_to_jsonl(purchases.events).encode()

    exotic = dataclasses.replace(
        purchases, amount=np.concatenate([[10_000.0, 123_456.78, 1e15], amounts[3:]])
    )
    assert exotic.to_jsonl().splitlines()[:3] == [
        line.encode() for line in events_to_jsonl(exotic.events.iloc[:3]).splitlines()
    ]


def test_the_radix_sort_is_numpys_stable_sort():
    rng = np.random.default_rng(3)
    # Many ties, and values past 2**16 (where the two radix passes meet).
    seconds = np.concatenate([rng.integers(0, 86_340, size=200_000), [65_535, 65_536, 0, 86_339] * 50])
    np.testing.assert_array_equal(
        generator._stable_argsort_seconds(seconds), np.argsort(seconds, kind="stable")
    )
