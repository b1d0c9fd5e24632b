"""The typed model diff report: one dataclass per section, ``to_dict()`` / ``from_dict()`` and a summary.

Every number is a plain Python float/int (or None when the section could not be
computed, with a ``note`` saying why), so the report round-trips through JSON
unchanged; the registry stores exactly ``to_dict()``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

Distribution = dict[str, Any]  # {"mean": float | None, "quantiles": {"p0": ..., "p100": ...}}


@dataclass(frozen=True)
class Compatibility:
    """Can the two models be compared, and how: types, shapes, dtypes, id maps."""

    model_types: list[str]
    factors: list[int]
    dtypes: list[str]
    num_users: list[int]
    num_items: list[int]
    id_maps: dict[str, dict[str, bool]]  # {"a": {"users": bool, "items": bool}, "b": {...}}
    interactions: list[bool]
    users_matched_by: str  # "ids" or "index"
    items_matched_by: str
    same_type: bool
    same_factors: bool
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CatalogueSide:
    """Users or items of B compared with A: added (only in B), removed (only in A), kept (both)."""

    matched_by: str  # "ids" or "index"
    added: int
    removed: int
    kept: int
    added_sample: list[Any]
    removed_sample: list[Any]


@dataclass(frozen=True)
class Catalogue:
    """Which users and items enter or leave between A and B."""

    users: CatalogueSide
    items: CatalogueSide
    disjoint_users: bool
    disjoint_items: bool


@dataclass(frozen=True)
class Churn:
    """How the top-k lists of shared users change from A to B."""

    users_compared: int
    full: bool  # every shared user (True) or a seeded sample
    k: int
    seen_excluded: str  # whose training interactions were excluded: "both", "a", "b" or "none"
    churn: float | None  # 1 - mean top-k overlap
    mean_overlap: float | None
    overlap: Distribution
    overlap_histogram: list[int]  # users with 0, 1, ..., k items in common
    top1_changed: float | None  # share of users whose first item differs
    mean_rbo: float | None  # rank-biased overlap, p = 0.9
    rbo: Distribution
    note: str | None = None


@dataclass(frozen=True)
class Neighbours:
    """How stable each shared item's top-k cosine neighbours are."""

    items_compared: int
    k: int
    mean_overlap: float | None
    overlap: Distribution
    note: str | None = None


@dataclass(frozen=True)
class CoverageSide:
    """Diversity of one model's lists for the sampled users."""

    coverage_at_k: float | None  # distinct recommended items / catalogue size
    distinct_items: int
    gini: float | None  # of how often each catalogue item is recommended
    mean_popularity_rank: float | None  # 1 = most interacted-with item; None without interactions
    mean_popularity_percentile: float | None  # mean rank / catalogue size (0 = head, 1 = tail)


@dataclass(frozen=True)
class Coverage:
    """Coverage and popularity bias of A and B on the same users."""

    a: CoverageSide
    b: CoverageSide


@dataclass(frozen=True)
class Drift:
    """Cosine similarity of shared items' vectors after orthogonal Procrustes alignment."""

    items_compared: int
    aligned: Distribution
    raw: Distribution  # without alignment (empty when the factor counts differ)
    padded: bool  # factor counts differed: the smaller side was padded with zero columns
    note: str | None = None


@dataclass(frozen=True)
class MetricRow:
    """One registered metric of A and B and their difference (``b - a``)."""

    name: str
    a: float | None
    b: float | None
    diff: float | None
    relative: float | None  # (b - a) / |a|


@dataclass(frozen=True)
class DiffReport:
    """``diff_models(a, b)``: what changes when B replaces A. See docs/model-diff.md."""

    model_a: str
    model_b: str
    key: str
    params: dict[str, Any]
    computed_at: str
    seconds: float
    compatibility: Compatibility
    catalogue: Catalogue
    churn: Churn
    neighbours: Neighbours
    coverage: Coverage
    drift: Drift
    metrics: list[MetricRow]

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON types (what the registry stores and ``cfreg diff --json`` prints)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DiffReport:
        """Rebuild a report from :meth:`to_dict` output."""
        catalogue = data["catalogue"]
        return cls(
            **{f.name: data[f.name] for f in fields(cls) if f.name in _PLAIN},
            compatibility=Compatibility(**data["compatibility"]),
            catalogue=Catalogue(
                users=CatalogueSide(**catalogue["users"]), items=CatalogueSide(**catalogue["items"]),
                disjoint_users=catalogue["disjoint_users"], disjoint_items=catalogue["disjoint_items"],
            ),
            churn=Churn(**data["churn"]),
            neighbours=Neighbours(**data["neighbours"]),
            coverage=Coverage(a=CoverageSide(**data["coverage"]["a"]), b=CoverageSide(**data["coverage"]["b"])),
            drift=Drift(**data["drift"]),
            metrics=[MetricRow(**row) for row in data["metrics"]],
        )

    def summary(self) -> str:
        """A few lines for people: churn, top-1 change, neighbours, drift, coverage, warnings."""
        churn, k = self.churn, self.churn.k
        lines = [f"{self.model_a} -> {self.model_b} (k={k}, {churn.users_compared} users, seed={self.params['seed']})"]
        if churn.churn is None:
            lines.append(f"churn: n/a ({churn.note})")
        else:
            lines.append(
                f"churn@{k}: {churn.churn:.3f} (mean overlap {churn.mean_overlap:.3f}, RBO {churn.mean_rbo:.3f}); "
                f"top-1 changed for {churn.top1_changed:.1%} of users"
            )
        if self.neighbours.mean_overlap is not None:
            lines.append(f"neighbour overlap@{k}: {self.neighbours.mean_overlap:.3f} over {self.neighbours.items_compared} items")
        if self.drift.aligned.get("mean") is not None:
            lines.append(f"embedding drift: aligned cosine mean {self.drift.aligned['mean']:.3f} "
                         f"(median {self.drift.aligned['quantiles']['p50']:.3f})")
        a, b = self.coverage.a, self.coverage.b
        if a.coverage_at_k is not None and b.coverage_at_k is not None:
            lines.append(f"coverage@{k}: {a.coverage_at_k:.3f} -> {b.coverage_at_k:.3f}; "
                         f"gini {a.gini:.3f} -> {b.gini:.3f}")
        users, items = self.catalogue.users, self.catalogue.items
        lines.append(f"items: +{items.added} -{items.removed} ={items.kept} (by {items.matched_by}); "
                     f"users: +{users.added} -{users.removed} ={users.kept} (by {users.matched_by})")
        lines.extend(f"warning: {text}" for text in self.compatibility.warnings)
        return "\n".join(lines)


_PLAIN = {"model_a", "model_b", "key", "params", "computed_at", "seconds"}
