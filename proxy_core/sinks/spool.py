"""A bounded, append-only queue of lines on disk, read and acknowledged in order.

Segments are `<n>.spool` files of at most SEGMENT_BYTES; `acked` holds the position
(segment, byte) up to which the broker confirmed. A restart resumes from there, so a
line is sent at least once; the brokers' dedup keys make that exactly once. Plain
blocking file IO, used by one task at a time (through a thread).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

SEGMENT_BYTES = 4 << 20


@dataclass(frozen=True, slots=True)
class Position:
    segment: int
    offset: int


class Spool:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._ack_file = directory / "acked"
        self.acked = self._read_ack()
        segments = self._segments()
        self._write_segment = segments[-1] if segments else max(self.acked.segment, 1)
        self._writer = self._open_writer()
        self.size = sum(self._path(n).stat().st_size for n in segments) - self.acked.offset

    # Writing (the feeding thread) ----------------------------------------------------

    def append(self, lines: list[bytes]) -> int:
        """Append what fits; return how many lines did (the rest are the caller's gap)."""
        taken = 0
        for line in lines:
            if self.size + len(line) + 1 > self.max_bytes:
                break
            if self._writer.tell() >= SEGMENT_BYTES:
                self._writer.close()
                self._write_segment += 1
                self._writer = self._open_writer()
            self._writer.write(line + b"\n")
            self.size += len(line) + 1
            taken += 1
        self._writer.flush()
        return taken

    # Reading (the sending task, through a thread) -----------------------------------

    def read(self, after: Position, max_lines: int) -> list[tuple[Position, bytes]]:
        """Up to `max_lines` complete lines after `after`, each with the position past it."""
        out: list[tuple[Position, bytes]] = []
        segment, offset = after.segment, after.offset
        while len(out) < max_lines and segment <= self._write_segment:
            path = self._path(segment)
            if path.exists():
                with path.open("rb") as f:
                    f.seek(offset)
                    for line in f:
                        if not line.endswith(b"\n"):
                            break  # being written
                        offset += len(line)
                        out.append((Position(segment, offset), line[:-1]))
                        if len(out) >= max_lines:
                            return out
            if segment == self._write_segment:
                break
            segment, offset = segment + 1, 0
        return out

    def ack(self, position: Position) -> None:
        """The broker has everything up to `position`: drop finished segments."""
        for n in self._segments():
            if n < position.segment:
                self._path(n).unlink()
        self.acked = position
        tmp = self._ack_file.with_suffix(".tmp")
        tmp.write_text(f"{position.segment} {position.offset}\n")
        os.replace(tmp, self._ack_file)
        self.size = sum(self._path(n).stat().st_size for n in self._segments()) - position.offset

    def close(self) -> None:
        self._writer.close()

    # ---------------------------------------------------------------------------------

    def _path(self, n: int) -> Path:
        return self.directory / f"{n:08d}.spool"

    def _segments(self) -> list[int]:
        return sorted(int(p.stem) for p in self.directory.glob("*.spool") if p.stem.isdigit())

    def _open_writer(self) -> BinaryIO:
        fd = os.open(self._path(self._write_segment), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        return os.fdopen(fd, "ab")

    def _read_ack(self) -> Position:
        try:
            segment, offset = self._ack_file.read_text().split()
            return Position(int(segment), int(offset))
        except (OSError, ValueError):
            return Position(1, 0)
