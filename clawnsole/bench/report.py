"""What a run produces: figures (each with its raw ceiling and the ratio to it), a table and a JSON file."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RATE = "items/s"
MS = "ms"
SECONDS = "s"


@dataclass
class Figure:
    """One measured number, e.g. `throughput / 2 processes = 7,100 items/s`."""

    scenario: str
    measure: str
    value: float
    unit: str
    # The raw figure for the same work (same statements, batch size and concurrency), when measured.
    ceiling: float | None = None
    ceiling_method: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def higher_is_better(self) -> bool:
        return self.unit == RATE

    @property
    def ratio(self) -> float | None:
        """How close to the ceiling: value/ceiling for rates, ceiling/value for times (1.0 = at the ceiling)."""
        if not self.ceiling or not self.value:
            return None
        return self.value / self.ceiling if self.higher_is_better else self.ceiling / self.value

    def to_json(self) -> dict[str, Any]:
        ratio = self.ratio
        return {
            "scenario": self.scenario,
            "measure": self.measure,
            "value": round(self.value, 3),
            "unit": self.unit,
            "better": "higher" if self.higher_is_better else "lower",
            "ceiling": None if self.ceiling is None else round(self.ceiling, 3),
            "ceiling_method": self.ceiling_method,
            "ratio": None if ratio is None else round(ratio, 3),
            "detail": self.detail,
        }


@dataclass
class Report:
    """Every figure of a run, with the machine it ran on."""

    mode: str
    machine: dict[str, Any]
    scenarios: list[str]
    figures: list[Figure] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    started_at: str = ""
    duration_s: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        return figure

    def to_json(self) -> dict[str, Any]:
        return {
            "format": "clawnsole-bench/1",
            "mode": self.mode,
            "started_at": self.started_at,
            "duration_s": round(self.duration_s, 1),
            "machine": self.machine,
            "settings": self.settings,
            "scenarios": self.scenarios,
            "figures": [f.to_json() for f in self.figures],
            "errors": self.errors,
        }

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")

    def table(self) -> str:
        """The figures as a plain aligned table (no colours: it is often pasted into issues)."""
        header = ["SCENARIO", "MEASURE", "VALUE", "UNIT", "CEILING", "OF CEILING", "DETAIL"]
        rows = [header]
        for f in self.figures:
            ratio = f.ratio
            rows.append(
                [
                    f.scenario,
                    f.measure,
                    _number(f.value, f.unit),
                    f.unit,
                    "" if f.ceiling is None else _number(f.ceiling, f.unit),
                    "" if ratio is None else f"{ratio * 100:.0f}%",
                    _detail(f.detail),
                ]
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        right = {2, 4, 5}
        lines = [
            "  ".join(
                (cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])) for i, cell in enumerate(row)
            ).rstrip()
            for row in rows
        ]
        lines.extend(f"{name}: FAILED: {message}" for name, message in self.errors.items())
        return "\n".join(lines)


def _number(value: float, unit: str) -> str:
    if unit == RATE:
        return f"{value:,.0f}"
    if unit == MS:
        return f"{value:.2f}"
    return f"{value:.3f}"


_DETAIL_KEYS: dict[str, Callable[[Any], str]] = {
    "p95": lambda v: f"p95 {v:.2f}",
    "p99": lambda v: f"p99 {v:.2f}",
    "max": lambda v: f"max {v:.2f}",
    "drain_s": lambda v: f"drain {v:.2f}s",
    "runs": lambda v: f"median of {len(v)}" if isinstance(v, list) and len(v) > 1 else "",
}


def _detail(detail: dict[str, Any]) -> str:
    parts = [fmt(detail[k]) for k, fmt in _DETAIL_KEYS.items() if k in detail]
    if note := detail.get("note"):
        parts.append(str(note))
    return ", ".join(p for p in parts if p)
