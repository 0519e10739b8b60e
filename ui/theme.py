"""The look: a Gradio theme and the stylesheet that shapes the page into a chat app."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import gradio as gr

ASSETS = Path(__file__).resolve().parent / "assets"


def build_theme() -> gr.themes.Base:
    # Fonts ship with Gradio and are served by this app: no request leaves the network.
    return gr.themes.Base(
        primary_hue="indigo",
        secondary_hue="slate",
        neutral_hue="slate",
        radius_size="lg",
        spacing_size="md",
        text_size="md",
        font=(
            gr.themes.LocalFont("IBM Plex Sans", weights=(400, 600, 700)),
            "ui-sans-serif",
            "system-ui",
            "sans-serif",
        ),
        font_mono=(gr.themes.LocalFont("IBM Plex Mono"), "ui-monospace", "Consolas", "monospace"),
    ).set(
        body_background_fill="#f7f7f8",
        block_border_width="0px",
        block_shadow="none",
        button_primary_background_fill="*primary_600",
        button_primary_background_fill_hover="*primary_700",
        button_cancel_background_fill="#dc2626",
        button_cancel_background_fill_hover="#b91c1c",
        button_cancel_border_color="#dc2626",
        button_cancel_text_color="#ffffff",
        button_cancel_text_color_hover="#ffffff",
    )


@cache
def stylesheet() -> str:
    return (ASSETS / "chat.css").read_text(encoding="utf-8")


@cache
def page_script() -> str:
    """A function Gradio runs once the page has loaded."""
    return (ASSETS / "chat.js").read_text(encoding="utf-8")
