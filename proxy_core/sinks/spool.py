"""A bounded, append-only queue of lines on disk, read and acknowledged in order.

Segments are `<n>.spool` files of at most SEGMENT_BYTES; `acked` holds the position
(segment, byte) up to which the broker confirmed. A restart resumes from there, so a
line is sent at least once; the brokers' dedup keys make that exactly once.

Two sides, so that the proxy's loop never waits for the disk:

- *Accounting* (`place`, `room`, `confirm`; `end`, `size`, `confirmed`): no IO, run by
  the owner (the sink's task, on the proxy's loop). `place` gives each line the position
  it will have in the files and says what to write where.
- *File IO* (`write`, `read`, `persist`; `acked`): plain blocking IO, run by one thread
  at a time (the sink's spool thread), in the order the accounting side asked for it.

`append` and `ack` do both, for a caller that has only one side.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO, NamedTuple

SEGMENT_BYTES = 4 << 20


class Position(NamedTuple):
    """Just past a line: its segment and the byte offset there."""

    segment: int
    offset: int


# What to write where: (segment, bytes), in order.
Writes = list[tuple[int, bytes]]


class Spool:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._ack_file = directory / "acked"
        acked = self._read_ack()
        segments = self._segments()
        for n in segments:
            if n < acked.segment:  # finished, but a crash came before it was deleted
                self._path(n).unlink(missing_ok=True)
        segments = [n for n in segments if n >= acked.segment]
        if segments:
            self._drop_torn_line(segments[-1])
        sizes = {n: self._path(n).stat().st_size for n in segments}
        if acked.offset > sizes.get(acked.segment, 0):  # its segment is gone or shorter: nothing left in it
            acked = Position(acked.segment, sizes.get(acked.segment, 0))
        last = segments[-1] if segments else max(acked.segment, 1)
        sizes.setdefault(last, 0)
        # File IO side
        self.acked = acked
        self._file_segment = last
        self._writer = self._open_writer(last)
        self._deleted_below = acked.segment
        # Accounting side
        self._sizes = sizes  # bytes in each segment from the confirmed one on, as placed
        self.end = Position(last, sizes[last])  # where the next line goes
        self.confirmed = acked
        self.size = sum(sizes.values()) - acked.offset  # bytes placed and not confirmed

    # Accounting (the owner; no IO) -------------------------------------------------------

    def room(self, nbytes: int) -> bool:
        """Whether a line of `nbytes` (newline included) fits."""
        return self.size + nbytes <= self.max_bytes

    def place(self, lines: list[bytes], start: int = 0, force: bool = False) -> tuple[list[Position], Writes]:
        """Place `lines[start:]` while they fit (all of them with `force`): the position
        past each placed line, and the writes that put them there. What did not fit is
        the caller's (a gap)."""
        positions: list[Position] = []
        writes: Writes = []
        segment, offset = self.end
        limit = (1 << 62) if force else self.max_bytes
        room = limit - self.size
        first = start  # of the lines going into `segment`
        i, end = start, len(lines)
        while i < end:
            n = len(lines[i]) + 1
            if n > room:
                break
            if offset >= SEGMENT_BYTES:
                if i > first:
                    writes.append((segment, b"\n".join(lines[first:i]) + b"\n"))
                self._sizes[segment] = offset
                segment, offset, first = segment + 1, 0, i
            offset += n
            room -= n
            positions.append(Position(segment, offset))
            i += 1
        if i > first:
            writes.append((segment, b"\n".join(lines[first:i]) + b"\n"))
        self._sizes[segment] = offset
        self.size = limit - room
        self.end = Position(segment, offset)
        return positions, writes

    def confirm(self, position: Position) -> None:
        """The broker has everything up to `position`: its bytes leave the bound."""
        old = self.confirmed
        if position.segment == old.segment:
            freed = position.offset - old.offset
        else:
            freed = self._sizes.get(old.segment, old.offset) - old.offset + position.offset
            for n in range(old.segment + 1, position.segment):
                freed += self._sizes.get(n, 0)
            for n in [n for n in self._sizes if n < position.segment]:
                del self._sizes[n]
        self.size -= freed
        self.confirmed = position

    # File IO (the spool thread) ---------------------------------------------------------

    def write(self, writes: Writes) -> None:
        """Write what `place` said, each segment's bytes in one write."""
        for segment, data in writes:
            if segment != self._file_segment:
                self._writer.close()
                self._file_segment = segment
                self._writer = self._open_writer(segment)
            view = memoryview(data)
            while view:
                view = view[self._writer.write(view) or 0:]

    def read(self, after: Position, max_lines: int, until: Position | None = None) -> list[tuple[Position, bytes]]:
        """Up to `max_lines` complete lines after `after` (and not past `until`), each
        with the position past it."""
        out: list[tuple[Position, bytes]] = []
        segment, offset = after
        while len(out) < max_lines and segment <= self._file_segment:
            path = self._path(segment)
            if path.exists():
                with path.open("rb") as f:
                    f.seek(offset)
                    for line in f:
                        if not line.endswith(b"\n"):
                            break  # being written
                        offset += len(line)
                        position = Position(segment, offset)
                        out.append((position, line[:-1]))
                        if len(out) >= max_lines or position == until:
                            return out
            if segment == self._file_segment:
                break
            segment, offset = segment + 1, 0
        return out

    def persist(self, position: Position) -> None:
        """Record on disk that the broker has everything up to `position`, then delete the
        segments before it."""
        tmp = self._ack_file.with_suffix(".tmp")
        tmp.write_text(f"{position.segment} {position.offset}\n")
        os.replace(tmp, self._ack_file)
        self.acked = position
        for n in range(self._deleted_below, position.segment):
            self._path(n).unlink(missing_ok=True)
        self._deleted_below = max(self._deleted_below, position.segment)

    def close(self) -> None:
        self._writer.close()

    # Both sides, for a caller that is both ----------------------------------------------

    def append(self, lines: list[bytes]) -> int:
        """Append what fits; return how many lines did (the rest are the caller's gap)."""
        positions, writes = self.place(lines)
        self.write(writes)
        return len(positions)

    def ack(self, position: Position) -> None:
        self.confirm(position)
        self.persist(position)

    # -------------------------------------------------------------------------------------

    def _path(self, n: int) -> Path:
        return self.directory / f"{n:08d}.spool"

    def _segments(self) -> list[int]:
        return sorted(int(p.stem) for p in self.directory.glob("*.spool") if p.stem.isdigit())

    def _drop_torn_line(self, segment: int) -> None:
        """A line cut short by a crash mid-write has no newline: cut it off, or the next
        line would be glued to it."""
        path = self._path(segment)
        with path.open("r+b") as f:
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                return
            f.seek(max(0, size - 1))
            if f.read(1) == b"\n":
                return
            keep, block = 0, 1 << 16
            end = size
            while end > 0:  # the last newline, read backwards
                start = max(0, end - block)
                f.seek(start)
                data = f.read(end - start)
                if (i := data.rfind(b"\n")) >= 0:
                    keep = start + i + 1
                    break
                end = start
            f.truncate(keep)

    def _open_writer(self, segment: int) -> BinaryIO:
        fd = os.open(self._path(segment), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        return os.fdopen(fd, "ab", buffering=0)

    def _read_ack(self) -> Position:
        try:
            segment, offset = self._ack_file.read_text().split()
            return Position(int(segment), int(offset))
        except (OSError, ValueError):
            return Position(1, 0)
