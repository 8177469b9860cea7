"""Server-side SVG charts for the officials' pages, drawn by pygal (no JavaScript, no
network: pygal's inline config script is dropped, its CSS is inlined by pygal itself)."""

from __future__ import annotations

import re

import pygal
from markupsafe import Markup, escape
from pygal.style import Style

STYLE = Style(
    font_family='system-ui, "Noto Sans CJK SC", "WenQuanYi Micro Hei", sans-serif',
    background="#ffffff",
    plot_background="#ffffff",
    foreground="#1d2430",
    foreground_strong="#1d2430",
    foreground_subtle="#5a6876",
    colors=("#0b4f6c", "#c0392b", "#1b6b2f"),
    label_font_size=13,
    major_label_font_size=13,
    value_font_size=12,
    title_font_size=16,
)
_SCRIPT = re.compile(r"<script\b.*?</script>", re.S)


def _svg(chart, label: str) -> Markup:
    svg = chart.render(is_unicode=True)
    svg = _SCRIPT.sub("", svg)
    svg = svg.replace("<svg ", f'<svg role="img" aria-label="{escape(label)}" class="chart" ', 1)
    return Markup(svg)


def _base(kind, title: str, *, height: int):
    return kind(
        js=[],
        disable_xml_declaration=True,
        style=STYLE,
        width=760,
        height=height,
        show_legend=False,
        title=title,
        print_values=False,
        margin=12,
        truncate_label=40,
    )


def bar_chart(title: str, labels: list[str], values: list[float], *, unit: str = "¥") -> Markup:
    chart = _base(pygal.Bar, title, height=320)
    chart.x_labels = labels
    chart.value_formatter = lambda v: f"{unit}{v:,.2f}"
    chart.add(title, values)
    return _svg(chart, title)


def hbar_chart(title: str, labels: list[str], values: list[float], *, unit: str = "¥") -> Markup:
    chart = _base(pygal.HorizontalBar, title, height=max(160, 34 * len(labels) + 90))
    chart.x_labels = labels
    chart.value_formatter = lambda v: f"{unit}{v:,.2f}"
    chart.add(title, values)
    return _svg(chart, title)


__all__ = ["bar_chart", "hbar_chart"]
