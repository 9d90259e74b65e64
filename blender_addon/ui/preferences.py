"""The add-on preferences layout."""

from __future__ import annotations


def draw_preferences(prefs, context) -> None:
    layout = prefs.layout
    layout.row().prop(prefs, "mode", expand=True)
    col = layout.column()
    if prefs.mode == "LOCAL":
        col.prop(prefs, "python_path")
        col.prop(prefs, "workspace")
        col.prop(prefs, "port")
    else:
        col.prop(prefs, "url")
        col.prop(prefs, "token")
    col.prop(prefs, "timeout_s")
    col.prop(prefs, "cache_dir")
    row = layout.row(align=True)
    row.operator("likeness.test_connection", icon="LINKED")
    if prefs.mode == "LOCAL":
        row.operator("likeness.stop_engine", icon="X")
    status = context.window_manager.likeness.engine_status
    if status:
        box = layout.box()
        box.alert = status.startswith("Not connected")
        box.label(text=status)
