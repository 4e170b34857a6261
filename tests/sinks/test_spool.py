"""The spool: in order, at least once across restarts, bounded, segments dropped once acknowledged."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy_core.sinks import spool as spool_module
from proxy_core.sinks.spool import Position, Spool


def drain(s: Spool, after: Position, batch: int = 7) -> tuple[list[bytes], Position]:
    got = []
    while items := s.read(after, batch):
        got += [line for _, line in items]
        after = items[-1][0]
    return got, after


def test_lines_come_back_in_order_and_an_ack_survives_a_restart(tmp_path, monkeypatch):
    monkeypatch.setattr(spool_module, "SEGMENT_BYTES", 100)  # many segments
    s = Spool(tmp_path, 1 << 20)
    lines = [b"event %d" % i for i in range(200)]
    assert s.append(lines) == 200
    first = s.read(Position(1, 0), 50)
    assert [line for _, line in first] == lines[:50]
    s.ack(first[-1][0])
    s.close()
    again = Spool(tmp_path, 1 << 20)  # a restart resumes after the last acknowledged line
    rest, end = drain(again, again.acked)
    assert rest == lines[50:]
    again.ack(end)
    assert len(list(tmp_path.glob("*.spool"))) == 1  # finished segments are gone
    assert again.size == 0


def test_a_full_spool_takes_what_fits_and_makes_room_when_acknowledged(tmp_path):
    s = Spool(tmp_path, 100)
    assert s.append([b"x" * 40, b"y" * 40, b"z" * 40]) == 2  # 41 + 41 bytes fit, the third does not
    items = s.read(Position(1, 0), 10)
    s.ack(items[-1][0])
    assert s.append([b"z" * 40]) == 1


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.binary(min_size=1, max_size=30).filter(lambda b: b"\n" not in b), max_size=20),
                max_size=12),
       st.integers(1, 9))
def test_any_interleaving_of_appends_reads_and_acks_loses_nothing(tmp_path_factory, appends, batch):
    s = Spool(tmp_path_factory.mktemp("spool"), 1 << 20)
    position, got, sent = s.acked, [], []
    for lines in appends:
        s.append(lines)
        sent += lines
        items = s.read(position, batch)
        if items:
            got += [line for _, line in items]
            position = items[-1][0]
            s.ack(position)
    rest, _ = drain(s, position, batch)
    assert got + rest == sent


def test_a_line_cut_short_by_a_crash_is_dropped_on_restart(tmp_path):
    s = Spool(tmp_path, 1 << 20)
    s.append([b"one", b"two"])
    s.close()
    with (tmp_path / "00000001.spool").open("ab") as f:
        f.write(b"thr")  # the process died mid-write
    again = Spool(tmp_path, 1 << 20)
    again.append([b"four"])
    lines, _ = drain(again, again.acked)
    assert lines == [b"one", b"two", b"four"]  # not b"thrfour"
    assert again.size == len(b"one\ntwo\nfour\n")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["place", "confirm", "persist", "restart"]),
                          st.lists(st.binary(min_size=1, max_size=40).filter(lambda b: b"\n" not in b), max_size=8),
                          st.integers(0, 9)), max_size=25))
def test_the_accounting_side_agrees_with_the_files(tmp_path_factory, ops):
    """`place` (no IO) then `write`, `confirm` then `persist`, in any order and across
    restarts: positions and sizes counted in memory are those of the files, and the bound
    holds for what is not confirmed."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(spool_module, "SEGMENT_BYTES", 64)  # many segments
        check_accounting(tmp_path_factory.mktemp("spool"), ops)


def check_accounting(directory, ops) -> None:
    s = Spool(directory, 400)
    unconfirmed: list[tuple[Position, bytes]] = []  # placed, written, not confirmed
    for op, lines, k in ops:
        if op == "place":
            positions, writes = s.place(lines)
            s.write(writes)
            assert s.size <= 400
            unconfirmed += zip(positions, lines[:len(positions)], strict=True)
        elif op == "confirm" and unconfirmed:
            upto = min(k, len(unconfirmed) - 1)
            s.confirm(unconfirmed[upto][0])
            unconfirmed = unconfirmed[upto + 1:]
        elif op == "persist":
            s.persist(s.confirmed)
            assert min(int(p.stem) for p in directory.glob("*.spool")) == s.acked.segment  # finished ones gone
        elif op == "restart":
            s.persist(s.confirmed)
            s.close()
            s = Spool(directory, 400)
        assert s.read(s.confirmed, 1000) == unconfirmed  # positions as counted, lines as placed
        assert s.size == sum(len(line) + 1 for _, line in unconfirmed)
        assert s.end == (unconfirmed[-1][0] if unconfirmed else s.end)
    s.close()
