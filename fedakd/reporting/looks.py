"""One look per method (colour, line style, marker, hatch), the same in every figure of every study.

A method's look comes from its name's place in SUITE_METHODS, the suite's method and variant names, never
from its place in one config, so fedakd-res looks the same in the quick look and in the headline study. The
slots are colour x line style: 7 colours of Okabe & Ito's palette (black is kept for the focus method) x 4
line styles = 28 distinct (colour, style) pairs, more than the suite's 21 names. A name the suite does not
know takes a slot by a hash of its name among the slots left (stable across studies), the next free one when
two such names meet in one study. The focus method is drawn thick and black, a reference row (centralised)
grey and dotted.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterable

#: Okabe & Ito (2008), "Color Universal Design", without black (the focus method's).
COLOURS = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442")
STYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "v", "D", "P", "X")
HATCHES = ("", "//", "..", "xx")
#: The suite's config names (config/full.yaml), in a fixed order: the first 7 solid, the next 7 dashed, ...
SUITE_METHODS = ("fedavg", "fedavg-smote", "fedavg-ft", "fedakd-noattn", "fedakd-res", "feddf", "fedakd-nokd",
                 "fedakd-res-nokd", "feddf-parity", "fedavg-ros", "fedavg-rus", "fedavg-cw", "fedavg-focal",
                 "fedavg-bsm", "fedprox", "fedlc", "fedntd", "fedavg-ccvr", "creff", "centralised", "fedakd")
SLOTS = len(COLOURS) * len(STYLES)


@dataclass(frozen=True)
class Look:
    color: str
    linestyle: str
    marker: str
    hatch: str
    linewidth: float = 1.3
    zorder: float = 2.0

    def line(self) -> dict:
        """matplotlib keyword arguments of a line or an errorbar."""
        return {"color": self.color, "linestyle": self.linestyle, "marker": self.marker,
                "linewidth": self.linewidth, "zorder": self.zorder}


def _slot_look(slot: int) -> Look:
    colour, style = slot % len(COLOURS), (slot // len(COLOURS)) % len(STYLES)
    return Look(COLOURS[colour], STYLES[style], MARKERS[colour], HATCHES[style])


FOCUS_LOOK = Look("#000000", "-", "D", "", linewidth=2.4, zorder=3.0)
REFERENCE_LOOK = Look("#777777", ":", "s", "oo", linewidth=1.6)


def _hashed_slot(name: str, taken: set[int]) -> int:
    """A slot for a name the suite does not know: by its hash among the slots the suite's names leave free."""
    free = [slot for slot in range(SLOTS) if slot not in taken] or list(range(SLOTS))
    start = int(hashlib.sha256(name.encode()).hexdigest(), 16) % len(free)
    return free[start]


def method_looks(methods: Iterable[str], *, focus: str | None = "fedakd",
                 references: Iterable[str] = ("centralised",)) -> dict[str, Look]:
    """The look of each of ``methods``: the focus method's, a reference's, or its slot's."""
    references = set(references)
    known = {name: slot for slot, name in enumerate(n for n in SUITE_METHODS if n not in ("fedakd", "centralised"))}
    looks, used = {}, set()
    for name in methods:
        if name == focus:
            looks[name] = FOCUS_LOOK
            continue
        if name in references:
            looks[name] = REFERENCE_LOOK
            continue
        slot = known.get(name)
        if slot is None:
            slot = _hashed_slot(name, set(known.values()))
            while slot in used:  # two unknown names on one slot in this study: the next free one
                slot = (slot + 1) % SLOTS
        used.add(slot)
        looks[name] = _slot_look(slot)
    return looks


#: The most methods one axis shows; a study with more is split into panels (method_panels).
PANEL_LINES = 8
#: The ladder a figure called without a study assumes (the schema's default comparisons.ladder).
DEFAULT_LADDER = ("fedavg", "fedavg-ft", "fedakd-noattn", "fedakd")


def method_panels(methods: Iterable[str], *, focus: str | None = "fedakd", baseline: str | None = "fedavg",
                  ladder: Iterable[str] = DEFAULT_LADDER, references: Iterable[str] = ("centralised",),
                  classes: dict[str, str] | None = None) -> list[tuple[str, list[str]]]:
    """The panels a figure splits ``methods`` into, as (title, methods), so that no axis holds more than
    PANEL_LINES of them: one panel when they fit; else the ablation ladder, the focus method's other variants
    (the methods of its class, from ``classes``: name -> method class), then the other rivals in config order,
    in as few even panels as fit. Every panel after the first repeats the focus method, the baseline and the
    references, so that each reads on its own against the same yardsticks."""
    methods, references = list(dict.fromkeys(methods)), [m for m in references if m in methods]
    if len(methods) <= PANEL_LINES:
        return [("", methods)]
    anchors = [m for m in (focus, baseline) if m in methods] + references
    ladder = [m for m in ladder if m in methods]
    rest = [m for m in methods if m not in ladder and m not in anchors]
    classes = classes or {}
    variants = [m for m in rest if focus in classes and classes.get(m) == classes[focus]]
    rivals = [m for m in rest if m not in variants]
    groups = [("the ablation ladder", ladder), (f"variants of {focus}", variants)]
    room = max(PANEL_LINES - len(anchors), 1)
    chunks = -(-len(rivals) // room)
    for i in range(chunks):
        part = rivals[i * len(rivals) // chunks:(i + 1) * len(rivals) // chunks]
        groups.append(("rivals" + (f" ({i + 1} of {chunks})" if chunks > 1 else ""), part))
    return [(title, [m for m in methods if m in group or m in anchors]) for title, group in groups if group]
