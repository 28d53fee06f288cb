"""The benchmark shapes: batch, input array, latents, heads, layers (issue 2, item 6).

Every implementation is built from one `Shape`: an input array of ``m`` elements with ``c``
channels (already embedded, no position encoding), ``n`` learned latents of width ``d``, ``h``
heads in every attention, one cross-attention layer, ``layers`` self-attention layers, MLP
widening 4 everywhere, one learned output query of width ``d`` and ``classes`` logits.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Shape:
    """One benchmark shape; field names follow the issue (B, M, C, N, D, H, L)."""

    name: str
    b: int
    m: int
    c: int
    n: int
    d: int
    h: int
    layers: int
    widening: int = 4
    outputs: int = 1
    classes: int = 10

    @property
    def ffw(self) -> int:
        """Hidden width of every MLP (``widening * d``)."""
        return self.widening * self.d

    def to_dict(self) -> dict:
        """Return the shape as a plain JSON-serialisable dict."""
        return asdict(self)


SHAPES: dict[str, Shape] = {
    "cifar": Shape("cifar", b=32, m=1024, c=64, n=128, d=256, h=8, layers=6),
    "long": Shape("long", b=2, m=65536, c=32, n=256, d=512, h=8, layers=4),
    "huge": Shape("huge", b=1, m=1_048_576, c=32, n=256, d=512, h=8, layers=4),
    # a tiny shape for smoke tests of the harness itself (not reported)
    "tiny": Shape("tiny", b=2, m=16, c=8, n=4, d=16, h=2, layers=1),
}


def get_shape(name: str) -> Shape:
    """Return the shape called ``name``; raises ValueError naming the known shapes."""
    try:
        return SHAPES[name]
    except KeyError:
        raise ValueError(f"shape: expected one of {sorted(SHAPES)}, got {name!r}") from None
