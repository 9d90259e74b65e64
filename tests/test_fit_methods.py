"""The fitting-method seam (engine.fit): the registry, a method's config as the only way to change its numbers,
random-init through the build's own stages, and errors translated once at the CLI edge."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.cli import main
from engine.errors import LikenessError, OutOfMemory, classify
from engine.fit import METHODS, UnknownMethod, make_method, method_names, register
from engine.fit.proxy_init import ProxyInitConfig, ProxyInitFit
from engine.io.images import demo_photo
from engine.pipeline import FIT_STAGES, STAGE_NAMES, fit_field

REPO = Path(__file__).resolve().parents[1]


def field_hash(field) -> str:
    h = hashlib.sha256()
    for k, v in sorted(field.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().numpy().tobytes())
    return h.hexdigest()


def test_registry_lists_methods_and_refuses_a_second_one_of_a_name():
    assert method_names()[:2] == ("proxy-init", "random-init")

    @dataclass(frozen=True)
    class Cfg:
        pass

    class Clash:
        name, Config = "proxy-init", Cfg

    with pytest.raises(ValueError, match="registered already"):
        register(Clash)
    assert METHODS["proxy-init"] is ProxyInitFit


def test_unknown_methods_and_options_are_refused_naming_the_known_ones(tiny_config):
    with pytest.raises(UnknownMethod) as exc:
        make_method(tiny_config(method="nope"))
    hint = exc.value.hint
    assert all(n in hint for n in ("head-prior", "proxy-init", "random-init")) and exc.value.exit_code == 2
    with pytest.raises(UnknownMethod, match="w_alpha"):
        make_method(tiny_config(method_options={"w_alfa": 0.2}))
    with pytest.raises(UnknownMethod, match="whole number"):
        make_method(tiny_config(method_options={"init_batch": 10.5}))
    m = make_method(tiny_config(method="proxy-init", method_options={"w_alpha": 0.2, "init_batch": 4096.0}))
    assert m.options == ProxyInitConfig(w_alpha=0.2, init_batch=4096) and isinstance(m.options.init_batch, int)
    # the default method's config extends proxy-init's: the same names reach it, and its switches are 0 or 1
    hp = make_method(tiny_config(method_options={"w_alpha": 0.2, "template_sides": 0}))
    assert hp.name == "head-prior" and hp.options.w_alpha == 0.2 and hp.options.template_sides is False
    with pytest.raises(UnknownMethod, match="0 or 1"):
        make_method(tiny_config(method_options={"template_sides": 0.5}))


def test_cli_refuses_an_unknown_method_before_any_work(tmp_path, capsys):
    code = None
    try:
        code = main(["build", str(tmp_path / "a.jpg"), "--method", "nope", "-o", str(tmp_path / "o")])
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "proxy-init" in err[0] and "random-init" in err[0], err
    assert list(tmp_path.iterdir()) == []


def test_fit_field_runs_the_builds_own_stages_and_options_change_only_what_they_name(tiny_config):
    photo = demo_photo()
    base = fit_field(photo, tiny_config(method="proxy-init"))
    assert tuple(base.timings) == FIT_STAGES and FIT_STAGES == STAGE_NAMES[: len(FIT_STAGES)]
    assert base.method.name == "proxy-init" and base.scores["psnr_db"] > 15
    again = fit_field(photo, tiny_config(method="proxy-init"))
    assert field_hash(again.field) == field_hash(base.field), "deterministic"
    steeper = fit_field(photo, tiny_config(method="proxy-init", method_options={"matte_steepen": 6.0}))
    assert field_hash(steeper.field) != field_hash(base.field), "the option reaches the fit"
    rnd = fit_field(photo, tiny_config(method="random-init"))
    assert rnd.method.name == "random-init" and rnd.info_init["init_colour_mse"] is None
    assert field_hash(rnd.field) != field_hash(base.field)


def test_classify_translates_out_of_memory_and_bugs():
    oom = classify(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"), "cuda:0")
    assert isinstance(oom, OutOfMemory) and oom.exit_code == 3 and "GPU" in oom.message
    assert isinstance(classify(MemoryError()), OutOfMemory)
    bug = classify(KeyError("x"), "cpu", "report it", "the render")
    assert type(bug) is LikenessError and bug.code == "internal" and "the render" in bug.message
    assert bug.hint == "report it"
    domain = UnknownMethod("m")
    assert classify(domain) is domain


@pytest.mark.slow
def test_cli_out_of_memory_is_one_line_and_exit_3(tmp_path, draft_bundle):
    """A real allocation failure: the render runs under an address-space limit it cannot fit in."""
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (6 * 2**30, 6 * 2**30))

    cmd = [sys.executable, "-m", "engine", "-q", "render", str(draft_bundle), "--size", "8192"]
    r = subprocess.run([*cmd, "-o", str(tmp_path / "x.png")], capture_output=True, text=True, preexec_fn=limit)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 3 and len(lines) == 1 and "ran out of system memory" in lines[0], r.stderr[-2000:]
    assert not (tmp_path / "x.png").exists()


def test_serve_without_the_server_extra_says_which_extra(tmp_path):
    code = (
        "import sys; sys.modules['fastapi'] = None; from engine.cli import main; "
        f"sys.exit(main(['serve', '--workspace', {str(tmp_path / 'ws')!r}]))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "likeness[server]" in lines[0], r.stderr


def test_voxels_no_view_sees_keep_the_methods_starting_solid(tiny_config):
    """Behind the face the regularisers alone moved the SDF (Adam moves a voxel at the full learning rate on
    however small a consistent gradient): the back of the skull eroded into a wall. With keep_hidden (the
    default) those voxels end the fit exactly where the method started them; switched off they move."""
    import numpy as np

    from engine.fit.data import hidden_voxels
    from engine.fit.photofit import PhotoFitConfig

    assert PhotoFitConfig().keep_hidden
    photo = demo_photo()
    cfg = tiny_config(method="proxy-init", iterations=40)
    ctx = fit_field(photo, cfg, analysis=None)
    hidden = hidden_voxels(ctx.field, ctx.data, cfg, PhotoFitConfig().hidden_margin_voxels)
    assert 0.05 < hidden.mean() < 0.6, hidden.mean()  # the inside and the back of the head, not the whole box
    assert ctx.info_fit["hidden_voxel_frac"] == pytest.approx(hidden.mean(), abs=1e-3)
    # the starting solid: the method's initial SDF on the same data
    method = make_method(cfg)
    start = method.initial_sdf(ctx.field, ctx.data, np.linalg.inv(ctx.data.cv_to_canon))
    end = ctx.field.sdf[0, 0].detach().cpu().numpy()
    assert np.array_equal(end[hidden], start[hidden])
    assert not np.allclose(end[~hidden], start[~hidden])  # the seen voxels are fitted
    off = fit_field(photo, tiny_config(method="proxy-init", iterations=40, method_options={"keep_hidden": 0}))
    moved = np.abs(off.field.sdf[0, 0].detach().cpu().numpy() - start)[hidden]
    assert moved.max() > 0.5 * off.field.voxel, moved.max()
    assert "hidden_voxel_frac" not in off.info_fit
