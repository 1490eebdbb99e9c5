"""Bit-packed unsigned integers: the suffix array's on-disk and in-memory form.

A suffix array over n tokens needs ceil(log2 n) bits per row, not 32: 26 bits for a 65 M-token
corpus.  ``PackedInts`` stores rows of exactly ``bits`` bits, little-endian bit order (bit k of
the stream is bit k % 8 of byte k // 8), followed by ``PAD`` zero bytes so that reading an
8-byte window at any row's first byte stays inside the buffer.

Reading row i: ``int.from_bytes(buf[b:b + 8], "little") >> s & mask`` with b, s = divmod(i * bits,
8), one slice and one shift: cheap enough for the binary searches, which read a few dozen rows
per query.  Ranges and fancy indices decode in numpy with one gather from a byte-strided
``<u8`` view (an unaligned 64-bit window at every byte offset), a shift and a mask.
"""

from __future__ import annotations

import numpy as np

#: zero bytes after the last row: an 8-byte window at the last row's first byte stays in bounds
PAD = 8
#: rows packed per numpy step (a multiple of 64 keeps every chunk word-aligned)
CHUNK = 1 << 16
MAX_BITS = 57  # a row plus its in-byte shift must fit one 64-bit window


def bits_for(n: int) -> int:
    """Bits per row for values in [0, n): at least 1."""
    return max(1, (max(n, 1) - 1).bit_length())


def pack(values: np.ndarray, bits: int) -> np.ndarray:
    """Pack non-negative ints of at most ``bits`` bits; (ceil(n * bits / 8) + PAD,) uint8."""
    if not 1 <= bits <= MAX_BITS:
        raise ValueError(f"bits must be in 1..{MAX_BITS}, not {bits}")
    n = int(values.shape[0])
    words = np.zeros((n * bits + 63) // 64 + 1, dtype="<u8")  # +1: the last row's spill
    for lo in range(0, n, CHUNK):  # CHUNK rows = CHUNK * bits / 64 whole words
        _pack_chunk(values[lo:lo + CHUNK], bits, words[lo * bits // 64:])
    nbytes = (n * bits + 7) // 8
    out = np.zeros(nbytes + PAD, dtype=np.uint8)
    out[:nbytes] = words.view(np.uint8)[:nbytes]
    return out


def _pack_chunk(values: np.ndarray, bits: int, words: np.ndarray) -> None:
    """OR one chunk of rows into ``words``, which starts at the chunk's first bit."""
    v = values.astype(np.uint64)
    if v.size and int(v.max()) >> bits:
        raise ValueError(f"a value does not fit in {bits} bits")
    offset = np.arange(v.shape[0], dtype=np.uint64) * np.uint64(bits)
    word = (offset >> np.uint64(6)).astype(np.int64)
    shift = offset & np.uint64(63)
    # every word holds the start of at least one row (bits <= 64), so the rows starting in a
    # word are one run: OR them with reduceat; a row crossing into the next word spills its
    # high bits there, and each word receives at most one spill
    low = v << shift
    run_starts = np.flatnonzero(np.diff(word, prepend=-1))
    words[word[run_starts]] |= np.bitwise_or.reduceat(low, run_starts)
    crossing = np.flatnonzero(shift + np.uint64(bits) > np.uint64(64))
    if crossing.size:
        words[word[crossing] + 1] |= v[crossing] >> (np.uint64(64) - shift[crossing])


class PackedInts:
    """A read-only array of ``n`` unsigned ints of ``bits`` bits over a packed buffer."""

    def __init__(self, buffer, n: int, bits: int) -> None:
        need = (n * bits + 7) // 8 + PAD
        if len(buffer) < need:
            raise ValueError(f"packed buffer of {len(buffer)} bytes, {n} rows of {bits} bits need {need}")
        self.buffer = buffer  # bytes-like; slicing gives bytes (mmap, bytes) or a view (ndarray)
        self._slice = buffer if not isinstance(buffer, np.ndarray) else memoryview(buffer)
        self.n = n
        self.bits = bits
        self.mask = (1 << bits) - 1
        # an unaligned little-endian 64-bit window at every byte offset (stride 1 byte)
        self._windows = np.ndarray(shape=(need - 7,), dtype="<u8", buffer=buffer, strides=(1,))

    @classmethod
    def from_values(cls, values: np.ndarray, bits: int | None = None) -> "PackedInts":
        """Pack an int array (bits: the fewest that hold every value when not given)."""
        if bits is None:
            bits = bits_for(int(values.max()) + 1 if values.size else 1)
        return cls(pack(values, bits), int(values.shape[0]), bits)

    def __len__(self) -> int:
        return self.n

    @property
    def shape(self) -> tuple[int]:
        return (self.n,)

    @property
    def nbytes(self) -> int:
        return len(self.buffer)

    def at(self, i: int) -> int:
        """Row i as a Python int (no bounds check: the searches stay inside [0, n))."""
        bit = i * self.bits
        b = bit >> 3
        return (int.from_bytes(self._slice[b:b + 8], "little") >> (bit & 7)) & self.mask

    def take(self, rows: np.ndarray) -> np.ndarray:
        """Rows at the given indices; int64 array of the same shape."""
        bit = np.asarray(rows, dtype=np.int64) * self.bits
        window = self._windows[bit >> 3]
        return ((window >> (bit.view(np.uint64) & np.uint64(7))) & np.uint64(self.mask)).view(np.int64)

    def __getitem__(self, key):
        if isinstance(key, slice):
            lo, hi, step = key.indices(self.n)
            rows = range(lo, hi, step)
            if len(rows) <= CHUNK:
                return self.take(np.arange(lo, hi, step, dtype=np.int64))
            out = np.empty(len(rows), dtype=np.int64)
            for i in range(0, len(rows), CHUNK):  # chunks keep the temporaries in cache
                part = rows[i:i + CHUNK]
                out[i:i + len(part)] = self.take(np.arange(part.start, part.stop, part.step, dtype=np.int64))
            return out
        if isinstance(key, (int, np.integer)):
            i = int(key)
            if not -self.n <= i < self.n:
                raise IndexError(f"row {i} out of range for {self.n} rows")
            return self.at(i % self.n)
        return self.take(np.asarray(key))

    def to_array(self) -> np.ndarray:
        """All rows as an int64 array."""
        return self[:]
