"""The batch's report: ``OUT/report.json`` (per item: status, reason, error code/message/hint, attempts, timings
per stage, versions, hashes, metrics, output files) and ``OUT/report.html``, a static page (inline CSS, relative
links, no script) with one row per head -- failed items first -- showing the photo, the +-30 degree views, the
turntable at 0 / 45 / 90 / 180 degrees, the metrics and links to the turntable and exports. Both are rewritten
atomically after every finished item, so a supervisor can watch a batch and a killed one leaves a true report."""

from __future__ import annotations

import html
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from engine import BUNDLE_FORMAT_VERSION, __version__
from engine.batch.plan import EXTRAS_DONE, Outputs, Planned, bundle_dir, extras_dir, manifest_sha256, work_dir
from engine.io.bundle import MANIFEST, write_text_atomic
from engine.io.manifest import view_key

REPORT_FORMAT = "likeness-batch-report"
REPORT_VERSION = 1
TURNTABLE_ANGLES = {"front": 0, "three-quarter": 45, "side": 90, "back": 180}
"""Which turntable frames the report shows, by name -> degrees (the nearest frame the bundle has)."""
STATUS_ORDER = {"failed": 0, "pending": 1, "running": 1, "succeeded": 2, "skipped": 2}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _rel(out: Path, path: Path) -> str:
    return os.path.relpath(path, out)


def turntable_picks(frames: list[str]) -> dict:
    """name -> {file, deg}: the bundle's turntable frame nearest each of :data:`TURNTABLE_ANGLES`."""
    n = len(frames)
    picks = {}
    for name, deg in TURNTABLE_ANGLES.items():
        if n:
            i = round(deg / 360.0 * n) % n
            picks[name] = {"file": frames[i], "deg": round(360.0 * i / n, 1)}
    return picks


def item_row(p: Planned, out: Path, outputs: Outputs, status: str, result: dict | None, manifest: dict | None) -> dict:
    """One item of report.json. ``manifest``: the bundle's (a skipped or succeeded item), else None."""
    item, bundle = p.item, bundle_dir(out, p.id)
    row: dict = {
        "id": p.id,
        "photo": item.photo,
        "options": item.options,
        "status": status,
        "action": p.action,
        "reason": p.reason,
        "attempts": (result or {}).get("attempts", 0),
        "error": (result or {}).get("error") or ((p.earlier or {}).get("error") if status == "failed" else None),
        "attempt_errors": (result or {}).get("attempt_errors", []),
        "seconds": (result or {}).get("seconds"),
        "host": (result or {}).get("host"),
        "log": _rel(out, log) if (log := work_dir(out) / "logs" / f"{p.id}.log").is_file() else None,
        "hashes": {"input_sha256": p.input_sha256, "manifest_sha256": None},
        "versions": {"engine": __version__, "bundle_format": None},
        "timings_s": {},
        "metrics": {},
        "bundle": None,
        "files": {},
        "turntable": {},
        "exports": {},
    }
    if result and result.get("lost_workers"):
        row["lost_workers"] = result["lost_workers"]
    if manifest is None:
        return row
    files = {k: f"{p.id}/{v}" for k, v in manifest.get("files", {}).items() if isinstance(v, str)}
    mt = manifest.get("metrics") or {}
    frames = [f"{p.id}/{f}" for f in manifest.get("turntable_frames") or () if isinstance(f, str)]
    row.update(
        bundle=p.id,
        files={**files, "manifest": f"{p.id}/{MANIFEST}"},
        timings_s=manifest.get("timings_s") or {},
        versions={"engine": manifest.get("engine_version"), "bundle_format": manifest.get("format_version")},
        metrics={
            "input_psnr_db": mt.get("input_psnr_db"),
            "input_ssim": mt.get("input_ssim"),
            "mesh_matte_iou": mt.get("mesh_matte_iou"),
            "faces": mt.get("faces"),
            "identity_distance": mt.get("identity_distance"),
        },
    )
    row["hashes"]["manifest_sha256"] = manifest_sha256(bundle)
    tt: dict = {"kind": outputs.turntable, "frames": turntable_picks(frames)}
    if outputs.turntable != "none" and "turntable_mp4" in files:
        tt["mp4"] = files["turntable_mp4"]
    extras = extras_dir(out, p.id)
    if outputs.needs_blender and (extras / EXTRAS_DONE).is_file():
        name = extras.name
        if outputs.turntable == "blender":
            tt["blender"] = {
                "mp4": f"{name}/turntable.mp4",
                "blend": f"{name}/turntable.blend",
                "frames": f"{name}/frames",
            }
        if "fbx" in outputs.exports:
            row["exports"]["fbx"] = f"{name}/head.fbx"
    for key in ("glb", "obj"):
        if key in outputs.exports and key in files:
            row["exports"][key] = files[key]
    row["turntable"] = tt
    return row


def counts(rows: list[dict]) -> dict:
    c = {"total": len(rows), "succeeded": 0, "skipped": 0, "failed": 0, "pending": 0}
    for r in rows:
        c[r["status"] if r["status"] in c else "pending"] += 1
    return c


def exit_code(c: dict) -> int:
    """0 every item succeeded (or was up to date), 3 every item failed, 1 some failed."""
    if c["failed"] == 0:
        return 0
    return 3 if c["failed"] == c["total"] else 1


def write_report(out: Path, header: dict, rows: list[dict], finished: bool) -> dict:
    """Write report.json and report.html (atomically); returns the report."""
    c = counts(rows)
    report = {
        "format": REPORT_FORMAT,
        "format_version": REPORT_VERSION,
        "engine_version": __version__,
        "bundle_format_version": BUNDLE_FORMAT_VERSION,
        **header,
        "updated": _now(),
        "state": "finished" if finished else "running",
        "counts": c,
        "exit_code": exit_code(c) if finished else None,
        "items": rows,
    }
    write_text_atomic(out / "report.json", json.dumps(report, indent=2))
    write_text_atomic(out / "report.html", render_html(report))
    return report


# -- HTML ------------------------------------------------------------------------------------------------------

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:22px;margin:0 0 4px} .sub{color:#666;margin-bottom:16px}
.counts span{display:inline-block;padding:2px 10px;margin-right:6px;border-radius:10px;background:#e8e8e8}
.counts .failed{background:#f6c9c9} .counts .succeeded{background:#cdeccd} .counts .skipped{background:#dde7f5}
table{border-collapse:collapse;width:100%;background:#fff} td,th{border-bottom:1px solid #ddd;padding:6px;
vertical-align:top;text-align:left} th{background:#f0f0f0;font-weight:600}
tr.failed td{background:#fff1f1} .id{font-weight:600;font-size:15px} .reason{color:#666;font-size:12px}
.badge{display:inline-block;padding:1px 8px;border-radius:8px;font-size:12px;color:#fff}
.badge.failed{background:#c0392b} .badge.succeeded{background:#27ae60} .badge.skipped{background:#2f6db5}
.badge.pending{background:#888} .err{color:#a01010} .hint{color:#555;font-style:italic}
figure{display:inline-block;margin:0 4px 0 0;text-align:center} figure img{height:96px;width:96px;
object-fit:contain;background:#444;border-radius:3px;display:block} figcaption{font-size:11px;color:#666}
.metrics td{border:0;padding:0 8px 0 0;font-size:12px} a{color:#1f5fa8}
"""


def _url(rel: str) -> str:
    return quote(rel)


def _fig(rel: str | None, caption: str) -> str:
    if not rel:
        return ""
    cap = html.escape(caption)
    return f'<figure><img src="{_url(rel)}" alt="{cap}"><figcaption>{cap}</figcaption></figure>'


def _fmt(v, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


def _row_html(r: dict, out_dir: Path) -> str:
    esc = html.escape
    status = r["status"]
    head = f'<div class="id">{esc(r["id"])}</div><span class="badge {esc(status)}">{esc(status)}</span>'
    reason = r.get("reason") or ""
    if status == "succeeded":
        reason = f"built because: {reason}"
    elif status == "failed" and r.get("action") != "carry":
        reason = ""
    head += f'<div class="reason">{esc(reason)}</div>'
    if r.get("attempts"):
        head += f'<div class="reason">attempts: {r["attempts"]}'
        head += f", {r['seconds']:.1f} s" if r.get("seconds") is not None else ""
        head += "</div>"
    files = r.get("files") or {}
    pics = ""
    if files:
        pics += _fig(files.get("photo_crop"), "photo")
        for yaw in (30.0, -30.0):
            pics += _fig(files.get(view_key(yaw, 0.0)), f"yaw {yaw:+.0f}°")
        for name, pick in (r.get("turntable") or {}).get("frames", {}).items():
            pics += _fig(pick["file"], f"{name} {pick['deg']:g}°")
    elif status == "failed" and (r.get("error") or {}).get("code") not in ("not_an_image", "unreadable_image"):
        pics += _fig(os.path.relpath(r["photo"], out_dir), "photo")
    err = r.get("error")
    if err and status == "failed":
        pics += (
            f'<div class="err"><b>{esc(err.get("code") or "")}</b>: {esc(err.get("message") or "")}</div>'
            f'<div class="hint">{esc(err.get("hint") or "")}</div>'
        )
    m = r.get("metrics") or {}
    metrics = ""
    if m:
        metrics = (
            '<table class="metrics">'
            f"<tr><td>input PSNR</td><td>{_fmt(m.get('input_psnr_db'), '.1f')} dB</td></tr>"
            f"<tr><td>SSIM</td><td>{_fmt(m.get('input_ssim'), '.3f')}</td></tr>"
            f"<tr><td>mesh/matte IoU</td><td>{_fmt(m.get('mesh_matte_iou'), '.3f')}</td></tr>"
            f"<tr><td>identity distance</td><td>{_fmt(m.get('identity_distance'), '.3f')}</td></tr>"
            f"<tr><td>faces</td><td>{_fmt(m.get('faces'), 'd')}</td></tr>"
            f"<tr><td>build</td><td>{_fmt((r.get('timings_s') or {}).get('total'), '.1f')} s</td></tr></table>"
        )
    links = []
    tt = r.get("turntable") or {}
    if tt.get("mp4"):
        links.append(("turntable.mp4", tt["mp4"]))
    if tt.get("blender"):
        links += [("Blender turntable.mp4", tt["blender"]["mp4"]), ("turntable.blend", tt["blender"]["blend"])]
    for key, rel in (r.get("exports") or {}).items():
        links.append((key.upper(), rel))
    if files.get("manifest"):
        links.append(("manifest.json", files["manifest"]))
    if r.get("log"):
        links.append(("log", r["log"]))
    link_html = "<br>".join(f'<a href="{_url(rel)}">{esc(name)}</a>' for name, rel in links)
    return f'<tr class="{esc(status)}"><td>{head}</td><td>{pics}</td><td>{metrics}</td><td>{link_html}</td></tr>'


def render_html(report: dict) -> str:
    """The static page of ``report`` (every path relative to the output folder, where the page lies)."""
    out_dir = Path(report.get("output", "."))
    c = report["counts"]
    rows = sorted(report["items"], key=lambda r: (STATUS_ORDER.get(r["status"], 1), r["id"]))
    counts_html = "".join(f'<span class="{k}">{k} {v}</span>' for k, v in c.items())
    title = f"Likeness batch: {html.escape(str(report.get('source', '')))}"
    body = "".join(_row_html(r, out_dir) for r in rows)
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{title}</title><style>{CSS}</style></head><body>'
        f"<h1>{title}</h1>"
        f'<div class="sub">{html.escape(report["state"])} &middot; updated {html.escape(report["updated"])} &middot; '
        f"engine {html.escape(report['engine_version'])} &middot; {html.escape(str(report.get('runner', '')))} "
        f"&middot; quality {html.escape(str(report.get('quality', '')))}</div>"
        f'<div class="counts">{counts_html}</div><p></p>'
        "<table><tr><th>head</th><th>photo, views and turntable</th><th>metrics</th><th>files</th></tr>"
        f"{body}</table></body></html>"
    )
