"""Small drawing helpers shared by the panels and the status bar."""

from __future__ import annotations

from .. import jobs
from ..client import format_eta


def task_text(task: jobs.Task) -> str:
    eta = format_eta(task.eta_s)
    return f"{task.stage or 'starting'} {task.progress * 100:.0f}%" + (f", {eta} left" if eta else "")


def draw_task(layout, task: jobs.Task | None, cancel_kind: str) -> None:
    """A running task as a progress bar + Cancel; a failed one as its error; a finished one's warnings."""
    if task is None:
        return
    if not task.finished:
        row = layout.row(align=True)
        row.progress(factor=task.progress, type="BAR", text=task_text(task))
        row.operator("likeness.cancel", text="", icon="CANCEL").kind = cancel_kind
    elif task.state in ("failed", "cancelled"):
        col = layout.column(align=True)
        col.alert = task.state == "failed"
        col.label(text=f"{task.label} {task.state}", icon="ERROR" if task.state == "failed" else "INFO")
        for line in _wrap(task.error, 48):
            col.label(text=line)
    elif isinstance(task.result, dict) and task.result.get("warnings"):
        col = layout.column(align=True)
        col.label(text=f"{task.label}: note", icon="INFO")
        for warning in task.result["warnings"]:
            for line in _wrap(str(warning), 48):
                col.label(text=line)


def _wrap(text: str, width: int) -> list[str]:
    words, lines, line = text.split(), [], ""
    for w in words:
        if line and len(line) + len(w) + 1 > width:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}".strip()
    return lines + ([line] if line else [])
