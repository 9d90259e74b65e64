"""Build an avatar from a ground-truth dataset's input view only, then score every other view.

    python scripts/eval_fidelity.py --gt out/gt/lps --preset standard -o out/eval/lps_standard
    python scripts/eval_fidelity.py --gt out/gt/synthetic --bundle out/some_bundle -o out/eval/x   # no build

On a full-circle set (``make_groundtruth.py --grid full``) the buckets run |yaw| 0, 30, ... 180 and the mean is
over all 360 degrees. Writes ``report.json``, ``report.md`` (per view, per yaw bucket, input-view depth over the
whole overlap, the head and the face; identity distances for |yaw| <= 60 when the dev extra is installed) and
``contact_sheet.png``
(ground truth beside ours) into the output folder, and the bundle into ``<out>/bundle`` unless ``--bundle`` is
given. The build is told the GT camera's true focal length (a calibrated evaluation). Frame alignment and the
scored regions are described in docs/FIDELITY.md and in :mod:`harness.align` / :mod:`harness.evaluate`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import scoring as sc  # noqa: E402
from harness.groundtruth import load_dataset  # noqa: E402

PAPER_CONTEXT = """Papers' numbers, for scale only (other data, other protocols):
Portrait NeRF (Gao et al.) Table 1, light-stage test set, novel views: PSNR 23.92, SSIM 0.7688, LPIPS 0.161.
Real-time radiance fields (Trevithick et al.) Table 3, H3DS input-view depth, scale-and-shift invariant on
[0, 1]-normalised depth: L1 0.048, RMSE 0.074."""


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--gt", required=True, help="ground-truth folder from make_groundtruth.py")
    p.add_argument("-o", "--out", required=True, help="report folder")
    p.add_argument("--preset", default="standard", choices=("draft", "standard", "high"))
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    p.add_argument("--bundle", help="score this existing bundle instead of building one")
    p.add_argument("--align", default="camera", choices=("camera", "landmarks"))
    p.add_argument(
        "--set",
        nargs="*",
        action="extend",
        default=[],
        help="build overrides name=value (e.g. iterations=50; option.NAME=NUMBER: a method option); repeatable",
    )
    return p.parse_args(argv)


def _overrides(pairs: list[str]) -> dict:
    from dataclasses import fields

    from engine.config import BuildConfig

    types = {f.name: f.type for f in fields(BuildConfig)}
    out = {}
    for kv in pairs:
        k, v = kv.split("=", 1)
        if k.startswith("option."):  # the fitting method's own numbers, as the CLI's --method-option
            out.setdefault("method_options", {})[k[len("option.") :]] = float(v)
            continue
        t = types.get(k)
        out[k] = int(v) if t in (int, "int") else float(v) if t in (float, "float") else v
    return out


def build(photo_path: Path, focal_35mm: float, quality: str, device: str, out: Path, overrides: dict) -> dict:
    from engine.config import preset
    from engine.io.images import load_photo
    from engine.pipeline import build_avatar

    cfg = preset(quality, device=device, focal_35mm=focal_35mm, **overrides)
    t0 = time.perf_counter()
    last = {"stage": None}

    def progress(stage, frac):
        if stage != last["stage"]:
            last["stage"] = stage
            print(f"  build: {stage} ({time.perf_counter() - t0:.0f} s)", flush=True)

    return build_avatar(load_photo(photo_path), cfg, out, progress, source_name=photo_path.name)


def write_report(report: dict, results, out: Path) -> None:
    from harness.sheet import contact_sheet
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=1, default=float))
    (out / "report.md").write_text(markdown(report))
    Image.fromarray(contact_sheet(results)).save(out / "contact_sheet.png")


def markdown(r: dict) -> str:
    inp, d = r["input"], r["input"]["depth"]
    al = r["alignment"]
    b = r.get("build", {})
    lines = [
        f"# Fidelity: {r['dataset']['head']} at the {r['preset']} preset",
        "",
        f"Command: `{r['stamp']['command']}`  ",
        f"Commit {r['stamp']['git_commit']}, {r['stamp']['when']}, device {r['stamp']['device'].get('requested')}, "
        f"load {r['stamp']['device'].get('loadavg_1_5_15')}.  ",
        f"Bundle: `{r['bundle']}`; build {b.get('total_s', '-')} s; input view in the manifest: "
        f"PSNR {b.get('input_psnr_db', '-')} dB, SSIM {b.get('input_ssim', '-')}, mesh/matte IoU "
        f"{b.get('mesh_matte_iou', '-')}.  ",
        f"Ground truth: `{r['dataset']['root']}` ({_render_desc(r['dataset']['render'])}), "
        f"{r['dataset']['views']} views.  ",
        f"LPIPS: {r['lpips']}.  ",
        f"Identity: {r.get('identity', '-')}.",
        "",
        f"Alignment (primary: {al['primary']}): camera protocol scale {al['camera']['scale']:.4f}; "
        + (
            f"landmark protocol scale {al['landmarks']['scale']:.4f}, {al['landmarks']['landmarks_used']} landmarks, "
            f"RMS residual {al['landmarks']['rms_residual_mm']:.1f} mm; the two differ by "
            f"{al['camera_vs_landmarks']['rotation_deg']:.2f} deg and "
            f"{al['camera_vs_landmarks']['centre_offset_mm']:.1f} mm at the head centre."
            if al.get("landmarks")
            else "landmark protocol unavailable."
        ),
        "",
        "## Input view",
        "",
        sc.markdown_table(
            [{**inp, **{f"d_{k}": v for k, v in d.items()}}],
            [
                ("psnr_db", "PSNR dB", 2),
                ("ssim", "SSIM", 4),
                ("lpips", "LPIPS", 3),
                ("iou", "IoU", 4),
                ("d_l1", "depth L1", 4),
                ("d_rmse", "depth RMSE", 4),
                ("d_head_l1", "head depth L1", 4),
                ("d_head_rmse", "head depth RMSE", 4),
                ("d_face_l1", "face depth L1", 4),
                ("d_face_rmse", "face depth RMSE", 4),
                ("lmk_err_pct", "lmk err %", 2),
                ("lmk_reproj_pct", "lmk reproj %", 2),
            ],
        ),
        "",
        "## Novel views by |yaw|",
        "",
        sc.markdown_table(r["yaw_buckets"] + [{**r["novel_mean"], "bucket": "all novel views"}], BUCKET_COLS),
        "",
        f"Mean over {r['novel_mean']['views']} novel views: PSNR {sc.fmt(r['novel_mean']['psnr_db'])} dB, "
        f"SSIM {sc.fmt(r['novel_mean']['ssim'], 4)}, IoU {sc.fmt(r['novel_mean']['iou'], 4)}, depth "
        f"{sc.fmt(r['novel_mean']['depth_mm'], 1)} mm, landmark error "
        f"{sc.fmt(r['novel_mean']['lmk_err_pct'])} %, reprojection {sc.fmt(r['novel_mean']['lmk_reproj_pct'])} %; "
        f"mediapipe finds exactly one face in {r['novel_mean']['views_with_one_face']} of them.",
        "",
        "## Per view",
        "",
        sc.markdown_table(r["views"], VIEW_COLS),
        "",
        "Columns: PSNR/SSIM over the union of the GT silhouette inside the reconstruction volume and ours, both over "
        "the background colour; IoU of those silhouettes; lmk err = mediapipe on ours vs mediapipe on the GT, lmk "
        "reproj = the bundle's 3D landmarks projected vs mediapipe on the GT, both in % of the GT face width; "
        "depth L1 = scale-and-shift invariant on [0, 1]-normalised z-depth (input view: whole overlap, the "
        "in-volume head, the face; novel views: in-volume overlap), depth mm = mean |ours / scale - GT| there; "
        "id = dlib face-descriptor distance, ours vs the GT render of the same camera, and the GT view vs the GT "
        "input view (the real head's own distance; same person < 0.6); faces = mediapipe's count on ours.",
        "",
        PAPER_CONTEXT,
        "",
    ]
    return "\n".join(lines)


def _render_desc(rd: dict) -> str:
    eng = rd["engine"] + (f" {rd['samples']} spp" if rd.get("samples") else "")
    return f"{eng}, {rd['lighting']} light, {rd['size']} px, fov {rd['fov_y_deg']:.1f} deg, {rd['distance_m']} m"


BUCKET_COLS = [
    ("bucket", "yaw bucket", 0),
    ("views", "views", 0),
    ("psnr_db", "PSNR dB", 2),
    ("ssim", "SSIM", 4),
    ("lpips", "LPIPS", 3),
    ("iou", "IoU", 4),
    ("depth_l1", "depth L1", 4),
    ("depth_mm", "depth mm", 1),
    ("lmk_err_pct", "lmk err %", 2),
    ("lmk_reproj_pct", "lmk reproj %", 2),
    ("id_ours_gt", "id ours-GT", 3),
    ("id_gt_input", "id GT-input", 3),
]
VIEW_COLS = [
    ("view", "view", 0),
    ("yaw_deg", "yaw", 0),
    ("pitch_deg", "pitch", 0),
    ("psnr_db", "PSNR dB", 2),
    ("ssim", "SSIM", 4),
    ("lpips", "LPIPS", 3),
    ("iou", "IoU", 4),
    ("depth_l1", "depth L1", 4),
    ("depth_mm", "depth mm", 1),
    ("lmk_err_pct", "lmk err %", 2),
    ("lmk_reproj_pct", "lmk reproj %", 2),
    ("id_ours_gt", "id ours-GT", 3),
    ("id_gt_input", "id GT-input", 3),
    ("id_detector", "id det. ours/GT", 0),
    ("faces_detected", "faces", 0),
]


def run(a) -> dict:
    from harness.evaluate import evaluate
    from harness.sysinfo import stamp

    from engine.avatar import load_avatar, load_landmarks_world

    ds = load_dataset(a.gt)
    out = Path(a.out)
    t0 = time.perf_counter()
    if a.bundle:
        bundle = Path(a.bundle)
    else:
        bundle = out / "bundle"
        print(f"building {a.preset} from {ds.photo_path()} (focal {ds.meta['focal_35mm']:.1f} mm equiv.)", flush=True)
        build(ds.photo_path(), ds.meta["focal_35mm"], a.preset, a.device, bundle, _overrides(a.set))
    build_wall = time.perf_counter() - t0
    avatar = load_avatar(bundle, device="cuda" if a.device == "cuda" else "cpu")
    m = avatar.manifest
    report, results = evaluate(avatar, load_landmarks_world(avatar), ds, a.align)
    report = {
        "dataset": {
            "root": str(ds.root),
            "head": ds.meta["head"],
            "render": ds.meta["render"],
            "views": len(ds.views),
        },
        "preset": m["settings"]["quality"],
        "settings_overrides": _overrides(a.set),
        "bundle": str(bundle),
        "build": {
            "total_s": m["timings_s"].get("total"),
            "timings_s": m["timings_s"],
            "wall_s_here": round(build_wall, 1) if not a.bundle else None,
            **{k: m["metrics"].get(k) for k in ("input_psnr_db", "input_ssim", "mesh_matte_iou")},
        },
        "stamp": stamp(a.device),
        **report,
    }
    write_report(report, results, out)
    return report


def main(argv=None) -> int:
    a = parse_args(argv)
    r = run(a)
    print((Path(a.out) / "report.md").read_text())
    n = r["novel_mean"]
    print(f"novel views: PSNR {sc.fmt(n['psnr_db'])} dB, SSIM {sc.fmt(n['ssim'], 4)}, IoU {sc.fmt(n['iou'], 4)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
