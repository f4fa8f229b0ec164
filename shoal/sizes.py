"""Sizes in bytes, as people write them: '4 MiB' out, '1GiB', '512MiB',
'64k' in. A leaf module (it imports nothing of shoal): errors' messages and
config's checks both use it."""
from __future__ import annotations

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB


def format_size(n: int) -> str:
    """4194304 -> '4 MiB': whole GiB, MiB or KiB, else bytes ('1,000 bytes')."""
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n:,} bytes"


def parse_size(text: str | int) -> int:
    """'1GiB', '512MiB', '64k', '4096' -> bytes. ValueError when it is not
    a size (shoal.parse_size, in config, raises InvalidArgument instead)."""
    if isinstance(text, int):
        return text
    s = text.strip().lower().replace(" ", "")
    units = [("gib", GiB), ("mib", MiB), ("kib", KiB), ("gb", 10**9), ("mb", 10**6), ("kb", 10**3),
             ("g", GiB), ("m", MiB), ("k", KiB), ("b", 1)]
    for suffix, mult in units:
        if s.endswith(suffix):
            num = s[: -len(suffix)]
            break
    else:
        num, mult = s, 1
    try:
        value = float(num)
    except ValueError:
        raise ValueError(f"not a size: {text!r}") from None
    if value < 0:
        raise ValueError(f"negative size: {text!r}")
    return int(value * mult)
