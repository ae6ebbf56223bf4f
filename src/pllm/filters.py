"""The counts of a filter pipeline: how many items were proposed, kept, and dropped by each named filter, in the
pipeline's order. CDCDA's device-side filters (personal/augment.py) and an expert's distillation filters
(expert/distill.py) both report with it.

    counts = FilterCounts(("empty", "duplicate"))
    counts.proposed += 3; counts.drop("duplicate"); counts.kept = 2
    counts.as_dict()     # {"proposed": 3, "kept": 2, "empty": 0, "duplicate": 1}
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class FilterCounts:
    names: tuple[str, ...] = ()  # the filters, in the order they run
    proposed: int = 0
    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)

    def drop(self, name: str) -> None:
        if name not in self.names:
            raise ValueError(f"no filter named {name!r}; the pipeline has {', '.join(self.names)}")
        self.dropped[name] += 1

    def as_dict(self) -> dict[str, int]:
        return {"proposed": self.proposed, "kept": self.kept, **{name: self.dropped[name] for name in self.names}}

    def summary(self) -> str:
        """The filters that dropped anything, as "name count, ..." (or "none dropped")."""
        return ", ".join(f"{k.replace('_', ' ')} {v}" for k in self.names if (v := self.dropped[k])) or "none dropped"
