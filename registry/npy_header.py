"""The header of a ``.npy`` file: numpy's own layout parsed directly, any other by numpy.

numpy writes a version 1.0 header as the dict text
``{'descr': '<f4', 'fortran_order': False, 'shape': (26000, 128), }`` padded with spaces to
an aligned length. numpy's reader parses it with ``ast.literal_eval`` (~20 µs a header, and a
model load reads two). A header in exactly that layout (a plain dtype string numpy knows, the
shape written as Python writes a tuple of non-negative ints, within numpy's 10,000-byte header
limit) is parsed here by a regular expression; every other header (another writer's spacing,
versions 2.0 and 3.0, structured or datetime dtypes, anything malformed) goes to numpy's reader
unchanged, which parses or refuses it as ``np.load`` would. The caller still checks the dtype
and the sizes.
"""

from __future__ import annotations

import functools
import re
from typing import Any, BinaryIO

_MAGIC_V1 = b"\x93NUMPY\x01\x00"
_PREFIX_BYTES = len(_MAGIC_V1) + 2  # magic, version, then the header length (uint16, little-endian)
_MAX_HEADER_BYTES = 10_000  # numpy's own limit (``max_header_size``) for headers it parses
_DIM = rb"(?:0|[1-9]\d*)"
# The shape as Python writes a tuple: (), (5,), (3, 4), (2, 3, 5).
_SHAPE = rb"|" + _DIM + rb",|" + _DIM + rb"(?:, " + _DIM + rb")+"
_NUMPY_LAYOUT = re.compile(
    rb"\{'descr': '([<>|=][a-z]\d{1,2})', 'fortran_order': (True|False), "
    rb"'shape': \((" + _SHAPE + rb")\), \} *\n"
)


def read_array_header(handle: BinaryIO) -> tuple[tuple[int, ...], bool, Any]:
    """``(shape, fortran_order, dtype)`` from the header at ``handle``'s position; leaves it at the data.

    Raises:
        ValueError: a format version numpy does not define; like EOFError, SyntaxError and the
            rest of what numpy's reader raises for a malformed header (the caller names the file).
    """
    start = handle.tell()
    prefix = handle.read(_PREFIX_BYTES)
    if len(prefix) == _PREFIX_BYTES and prefix.startswith(_MAGIC_V1):
        length = int.from_bytes(prefix[-2:], "little")
        header = handle.read(length) if length <= _MAX_HEADER_BYTES else b""
        match = _NUMPY_LAYOUT.fullmatch(header) if len(header) == length else None
        dtype = _dtype(match.group(1).decode()) if match is not None else None
        if match is not None and dtype is not None:
            shape = tuple(int(n) for n in match.group(3).split(b",") if n.strip())
            return shape, match.group(2) == b"True", dtype
    handle.seek(start)
    return _numpy_read(handle)


@functools.lru_cache(maxsize=64)
def _dtype(descr: str) -> Any:
    """numpy's dtype for a descr string; None when numpy knows none (its reader then refuses the header)."""
    import numpy as np

    try:
        return np.dtype(descr)
    except TypeError:
        return None


def _numpy_read(handle: BinaryIO) -> tuple[tuple[int, ...], bool, Any]:
    from numpy.lib import format as npformat

    version = npformat.read_magic(handle)
    if version == (1, 0):
        return npformat.read_array_header_1_0(handle)
    if version in ((2, 0), (3, 0)):
        return npformat.read_array_header_2_0(handle)
    raise ValueError(f"unsupported .npy format version {version}")
