"""Terminal output with rich (the ``cli`` extra); plain text when rich is not installed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .doctor import Finding

__all__ = ["console", "print_findings", "print_table"]


def console() -> Any:
    try:
        from rich.console import Console
    except ImportError:
        return None
    return Console()


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    out = console()
    if out is None:
        print(title)
        print("  ".join(columns))
        for row in rows:
            print("  ".join(str(c) for c in row))
        return
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(str(c) for c in row))
    out.print(table)


def print_findings(findings: Sequence[Finding], total: int) -> None:
    if not findings:
        print(f"{total} events read: no problems found")
        return
    rows = []
    for f in findings:
        detail = ", ".join(f"{k} ({n})" for k, n in f.breakdown.most_common(5))
        examples = "; ".join(f.examples) + (f" | {detail}" if detail else "")
        rows.append((f.severity, f.check, f.title, f.count, examples, f.fix))
    print_table(f"{total} events read", ("severity", "check", "problem", "count", "examples", "fix"), rows)
