"""``manage.py observability_report [--minutes N] [--json]``: the pipeline's figures for ops.

Prints counts per event type, the success rate, latency percentiles and each page's last Graph API
usage figures (see :mod:`observability.selectors` for the definitions), as a table or, with ``--json``, as one JSON
object with stable keys (documented in docs/observability.md).
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from observability.models import Event
from observability.selectors import PERCENTILES, report_build


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _figures(figures: Any) -> str:
    if not isinstance(figures, dict) or not figures:
        return "-"
    return " ".join(f"{name}={figures[name]:g}%" for name in ("call_count", "total_time", "total_cputime")
                    if isinstance(figures.get(name), (int, float)))


def _usage_lines(usage: dict[str, Any]) -> list[str]:
    """One block per page: Meta's last usage figures (percent of quota) and any wait it announced."""
    if not usage:
        return ["", "Graph API usage: no figures seen yet"]
    lines = ["", "Graph API usage (last figures Meta sent, percent of quota)"]
    for page_id, figures in sorted(usage.items()):
        lines.append(f"  page {page_id} at {figures.get('at')}: app {_figures(figures.get('app'))}; "
                     f"page {_figures(figures.get('page'))}")
        for entry in figures.get("business") or []:
            if isinstance(entry, dict):
                lines.append(f"    business {entry.get('business_id')} ({entry.get('type') or '-'}): "
                             f"{_figures(entry)}; regain access in "
                             f"{entry.get('estimated_time_to_regain_access', 0)} min")
    return lines


def report_format_text(report: dict[str, Any]) -> str:
    """The report as an aligned, plain-text table for a terminal."""
    window = report["window"]
    if window["minutes"]:
        title = (
            f"Observability report: last {window['minutes']} minutes "
            f"({window['since']} .. {window['until']})"
        )
    else:
        title = f"Observability report: all time (until {window['until']})"
    names = [name for name, _ in PERCENTILES]
    header = f"{'event type':<20} {'count':>8} {'timed':>8} " + " ".join(f"{n + ' ms':>10}" for n in names)
    lines = [title, "", header, "-" * len(header)]
    for event_type, count in report["counts"].items():
        latency = report["latency_ms"][event_type]
        lines.append(
            f"{event_type:<20} {count:>8} {latency['count']:>8} "
            + " ".join(f"{_ms(latency[n]):>10}" for n in names)
        )
    lines.append(f"{'total':<20} {report['total_events']:>8}")
    lines.append("")
    for label, caption in (("from_facebook", "end to end (Facebook time -> sent)"),
                           ("since_receipt", "since our receipt -> sent")):
        figures = report["end_to_end_ms"][label]
        lines.append(
            f"{caption:<36} n={figures['count']:<7} "
            + " ".join(f"{n}={_ms(figures[n])}" for n in names)
        )
    unreadable = report["counts"].get(Event.Type.MESSAGE_UNREADABLE, 0)
    lines.append(
        f"{'unreadable items kept':<36} {unreadable} "
        '(kept raw, not answered: see the inbox admin, status "unreadable")'
    )
    success = report["success"]
    rate = "-" if success["rate"] is None else f"{success['rate'] * 100:.1f}%"
    lines.append(
        f"{'success rate':<36} {rate} ({success['replied']} replied of "
        f"{success['needed_reply']} messages that needed a reply)"
    )
    lines.extend(_usage_lines(report.get("graph_usage") or {}))
    in_database = report["percentiles_computed_in"] == "database"
    where = "the database" if in_database else "Python (SQLite has no percentile_cont)"
    lines.append(f"(percentiles computed in {where})")
    return "\n".join(lines)


class Command(BaseCommand):
    help = "Counts per event type, success rate and latency p50/p95/p99 of the last N minutes."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--minutes", type=int, default=60,
            help="Window length in minutes, ending now (default 60; 0 for all time).",
        )
        parser.add_argument(
            "--json", dest="as_json", action="store_true", help="Print one JSON object instead of a table.")

    def handle(self, *args: Any, minutes: int, as_json: bool, **options: Any) -> None:
        if minutes < 0:
            raise CommandError("--minutes must be 0 (all time) or positive")
        report = report_build(minutes=minutes)
        if as_json:
            self.stdout.write(json.dumps(report, indent=2))
        else:
            self.stdout.write(report_format_text(report))
