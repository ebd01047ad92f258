"""Critical and warning must differ for everyone: the badge colours shipped in the page's style sheet are
checked as people with the common colour-vision deficiencies see them, and each level has its own symbol.

Contrast is the WCAG 2 ratio of relative luminances; the deficiencies are simulated with the matrices of
Machado, Oliveira and Fernandes (2009) at full severity, applied in linear RGB.
"""

from __future__ import annotations

import re
from pathlib import Path

import jinja2
import pytest

from autopyfactory.web import app as web_app

TEMPLATES = Path(web_app.__file__).parent / "templates"
BACKGROUND = "#ffffff"
SIMULATIONS = {
    "normal vision": ((1, 0, 0), (0, 1, 0), (0, 0, 1)),
    "protanopia": ((0.152286, 1.052583, -0.204868), (0.114503, 0.786281, 0.099216), (-0.003882, -0.048116, 1.051998)),
    "deuteranopia": ((0.367322, 0.860646, -0.227968), (0.280085, 0.672501, 0.047413), (-0.011820, 0.042940, 0.968881)),
    "tritanopia": ((1.255528, -0.076749, -0.178779), (-0.078411, 0.930809, 0.147602), (0.004733, 0.691367, 0.303900)),
}


def linear(colour: str) -> tuple[float, ...]:
    if len(colour) == 4:  # #abc
        colour = "#" + "".join(c * 2 for c in colour[1:])
    channels = (int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5))
    return tuple(c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)


def luminance(colour: str, seen_with: str = "normal vision") -> float:
    rgb = linear(colour)
    seen = [min(1.0, max(0.0, sum(m * c for m, c in zip(row, rgb, strict=True)))) for row in SIMULATIONS[seen_with]]
    return 0.2126 * seen[0] + 0.7152 * seen[1] + 0.0722 * seen[2]


def contrast(a: str, b: str, seen_with: str = "normal vision") -> float:
    low, high = sorted((luminance(a, seen_with), luminance(b, seen_with)))
    return (high + 0.05) / (low + 0.05)


def badge_style(level: str) -> dict[str, str]:
    css = (TEMPLATES / "base.html").read_text()
    rule = re.search(r"\.badge\." + level + r"\b[^{]*\{([^}]*)\}", css)
    assert rule, f"no .badge.{level} rule in base.html"
    return dict((k.strip(), v.strip().lower()) for k, v in
                (part.split(":", 1) for part in rule.group(1).split(";") if ":" in part))


def test_the_contrast_checker_itself():
    assert contrast("#000000", "#ffffff") == pytest.approx(21.0)
    # the old pair that many could not tell apart is caught by the check below
    assert min(contrast("#D55E00", "#E69F00", way) for way in SIMULATIONS) < 3.0


@pytest.mark.parametrize("seen_with", SIMULATIONS)
def test_critical_and_warning_stay_apart(seen_with):
    critical, warning = badge_style("critical")["background"], badge_style("warning")["background"]
    assert contrast(critical, warning, seen_with) >= 3.0, (seen_with, critical, warning)


@pytest.mark.parametrize("level", ["critical", "warning", "ok", "paused", "disabled"])
def test_each_badge_is_readable_and_stands_out_from_the_page(level):
    style = badge_style(level)
    assert contrast(style["color"], style["background"]) >= 4.5, style  # text on the badge
    # the badge's edge: its border where it has one that differs from the fill, else the fill itself
    edge = style.get("border-color", style["background"])
    assert max(contrast(edge, BACKGROUND), contrast(style["background"], BACKGROUND)) >= 3.0, style


def test_each_level_has_its_own_symbol_and_word():
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)
    env.filters["one_line"] = web_app.one_line
    badge = env.get_template("macros.html").module.badge
    shown = {level: str(badge(level)) for level in ("critical", "warning", "ok", "paused", "drained", "disabled")}
    symbols = {level: re.search(r'aria-hidden="true">([^<]+)<', html).group(1) for level, html in shown.items()}
    assert len(set(symbols.values())) == len(symbols), symbols
    for level, html in shown.items():
        assert html.endswith(f"> {level}</span>"), html
