"""Headless exports of an artist asset (docs/ASSET.md): its ``head.glb`` imported with Blender's own glTF importer,
written as FBX (mesh parts, the hair among them, the 52 ARKit shape keys, the armature and its skinning, the photo
camera, textures embedded: colour, normal and roughness maps, the hair's own colour) and/or as a static OBJ (every
part at the neutral face, UVs, an .mtl naming the asset's PNGs: ``map_Kd``, ``map_Bump``, ``map_Pr``).

    python scripts/asset_export.py --glb ASSET/head.glb -o STAGING --fbx head.fbx --obj head_static.obj
    blender -b --factory-startup --python-exit-code 1 -P scripts/asset_export.py -- --glb ... (the same)

``likeness asset BUNDLE --exports fbx,obj`` runs this script in a separate process (the bpy module's Python, or a
Blender binary; engine/asset/export.py) into a staging folder and moves the files into the asset folder itself. It
needs nothing but Blender's Python (4.2 through 5.0). Prints one JSON line (what it wrote, Blender's version, the
seconds) on success; exit code 1 with one line on stderr otherwise.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from blender_script import run  # noqa: E402  (beside this script; stdlib only)

OBJ_TEXTURES = {"likeness_atlas": "texture.png", "likeness_normal": "normal.png", "likeness_hair": "hair.png"}
"""The GLB's images the .mtl names, by the asset's own PNGs beside it (each part's colour from its own texture)."""
ROUGHNESS_FILE, ROUGHNESS_IMAGE = "roughness.png", "likeness_roughness"
"""The asset's grey roughness map, wired in place of the GLB's metallic-roughness image (packed, no file of its own,
read through Separate Color: neither exporter follows that)."""


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="asset_export.py", description="Artist asset GLB -> FBX and/or static OBJ")
    p.add_argument("--glb", required=True, help="the asset's head.glb")
    p.add_argument("-o", "--output", required=True, help="folder to write into (exists)")
    p.add_argument("--fbx", help="FBX file name inside the output folder")
    p.add_argument("--obj", help="OBJ file name inside the output folder (its .mtl beside it, same stem)")
    p.add_argument(
        "--textures",
        help="folder holding the asset's PNGs (texture, normal, roughness, hair) for the "
        "FBX's roughness and the .mtl (default: the GLB's)",
    )
    p.add_argument("--resolution", type=int, nargs=2, metavar=("W", "H"), help="the photo's size, pixels")
    return p.parse_args(argv)


def glb_json(path: Path) -> dict:
    """The JSON chunk of a GLB (stdlib: Blender's Python may lack the engine)."""
    with open(path, "rb") as fh:
        head = fh.read(20)
        if len(head) < 20 or head[:4] != b"glTF":
            raise ValueError(f"{path} is not a GLB")
        (n,) = struct.unpack("<I", head[12:16])
        return json.loads(fh.read(n))


def import_asset(glb: Path) -> dict:
    """A fresh empty scene with the GLB imported; returns {"parts": [mesh objects], "armature", "camera"}."""
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    result = bpy.ops.import_scene.gltf(filepath=str(glb))
    if "FINISHED" not in result:
        raise RuntimeError(f"the glTF import did not finish: {result}")
    scene = bpy.context.scene
    shapes = {pb.custom_shape for o in scene.objects if o.type == "ARMATURE" for pb in o.pose.bones}
    parts = [o for o in scene.objects if o.type == "MESH" and o not in shapes]
    arms = [o for o in scene.objects if o.type == "ARMATURE"]
    cams = [o for o in scene.objects if o.type == "CAMERA"]
    if not parts:
        raise RuntimeError(f"{glb} imported no meshes")
    return {"parts": sorted(parts, key=lambda o: o.name), "armature": arms[0] if arms else None,
            "camera": cams[0] if cams else None}  # fmt: skip


def set_resolution(scene, gltf: dict, resolution: list[int] | None) -> None:
    """The scene's render size: the photo's, else the GLB camera's aspect ratio (FBX writes the camera's aspect
    from it; glTF has no pixel size)."""
    if resolution:
        w, h = resolution
    else:
        cams = gltf.get("cameras") or [{}]
        aspect = float(cams[0].get("perspective", {}).get("aspectRatio") or 1.0)
        h = 1024
        w = max(1, round(h * aspect))
    r = scene.render
    r.resolution_x, r.resolution_y, r.resolution_percentage = int(w), int(h), 100
    r.pixel_aspect_x = r.pixel_aspect_y = 1.0


def photo_film(camera, aspect: float) -> None:
    """The film back at the photo's aspect (width / height), the fitted side kept: glTF's importer fits a 36 x 24
    mm film vertically, and FBX writes the film's width and height with a horizontal gate fit, so a square photo
    would come out 49 deg wide instead of 34."""
    cam = camera.data
    if cam.sensor_fit == "VERTICAL":
        cam.sensor_width = cam.sensor_height * aspect
    elif cam.sensor_fit == "HORIZONTAL":
        cam.sensor_height = cam.sensor_width / aspect


def select(objs) -> None:
    import bpy

    keep = {o.name for o in objs if o is not None}
    for o in bpy.context.view_layer.objects:
        o.select_set(o.name in keep)
    bpy.context.view_layer.objects.active = next(o for o in objs if o is not None)


def roughness_from_map(textures: Path) -> list[str]:
    """Wire ``textures/roughness.png`` (grey, Non-Color) straight into the Principled BSDF's Roughness of every
    material whose roughness the GLB's metallic-roughness image drives (the glTF importer's Separate Color, G), and
    Metallic to its constant 0 (the GLB's metallicFactor): the FBX and OBJ exporters take only an image linked
    straight to a socket. The hair's constant roughness is left as it is. Returns the materials rewired (none, and
    nothing changed, without roughness.png)."""
    import bpy

    path = textures / ROUGHNESS_FILE
    if not path.is_file():
        return []
    image, done = None, []
    for mat in bpy.data.materials:
        nt = mat.node_tree
        bsdf = next((n for n in nt.nodes if n.type == "BSDF_PRINCIPLED"), None) if nt else None
        if bsdf is None or not bsdf.inputs["Roughness"].is_linked:
            continue
        sep = bsdf.inputs["Roughness"].links[0].from_node
        if sep.type != "SEPARATE_COLOR":  # not the importer's metallic-roughness chain: not ours to change
            continue
        if image is None:
            image = bpy.data.images.load(str(path), check_existing=True)
            image.name = ROUGHNESS_IMAGE
            image.colorspace_settings.name = "Non-Color"
        tex = nt.nodes.new("ShaderNodeTexImage")
        tex.image, tex.name, tex.label = image, ROUGHNESS_IMAGE, ROUGHNESS_IMAGE
        tex.location = (sep.location.x, sep.location.y)
        old = [*(lk.from_node for lk in bsdf.inputs["Metallic"].links), sep]  # users before their sources
        old += [lk.from_node for lk in sep.inputs[0].links]
        for lk in list(bsdf.inputs["Metallic"].links):
            nt.links.remove(lk)
        bsdf.inputs["Metallic"].default_value = 0.0
        nt.links.new(tex.outputs["Color"], bsdf.inputs["Roughness"])
        for n in dict.fromkeys(old):  # the packed image's chain, now feeding nothing
            if not any(o.is_linked for o in n.outputs):
                nt.nodes.remove(n)
        done.append(mat.name)
    return done


def export_fbx(scene_objs: dict, path: Path) -> None:
    """Mesh parts with shape keys (the hair with none), the armature (no leaf bones added) skinning them, the
    camera; the images wired straight into a material (atlas, normal map, roughness map, the hair's) embedded."""
    import bpy

    select([*scene_objs["parts"], scene_objs["armature"], scene_objs["camera"]])
    result = bpy.ops.export_scene.fbx(
        filepath=str(path),
        use_selection=True,
        object_types={"MESH", "ARMATURE", "CAMERA"},
        use_mesh_modifiers=False,  # the armature stays a skin, the shape keys stay keys
        mesh_smooth_type="FACE",
        add_leaf_bones=False,
        bake_anim=False,
        path_mode="COPY",
        embed_textures=True,
    )
    if "FINISHED" not in result or not path.is_file():
        raise RuntimeError(f"the FBX export did not finish: {result}")


def export_obj(scene_objs: dict, path: Path, textures: Path) -> None:
    """Every part at the neutral face (shape key values 0, the rest pose), in the glTF's axes (+Y up, face +Z,
    metres), UVs and normals, one .mtl naming the asset's PNGs by file name (beside the OBJ), with the PBR
    extensions (``Pr``/``map_Pr`` roughness, ``Pm`` metallic)."""
    import bpy

    for o in scene_objs["parts"]:
        keys = o.data.shape_keys
        for kb in keys.key_blocks if keys else ():
            kb.value = 0.0
    for img in bpy.data.images:
        name = OBJ_TEXTURES.get(img.name)
        if name and (textures / name).is_file():
            img.filepath_raw = str(textures / name)  # the .mtl writes its base name (path_mode STRIP)
    select(scene_objs["parts"])
    result = bpy.ops.wm.obj_export(
        filepath=str(path),
        export_selected_objects=True,
        apply_modifiers=False,  # neutral: the Basis, no skinning
        export_uv=True,
        export_normals=True,
        export_materials=True,
        export_pbr_extensions=True,  # map_Pr roughness.png (without: Ns and map_Ns, a specular exponent)
        export_triangulated_mesh=False,
        forward_axis="NEGATIVE_Z",
        up_axis="Y",
        path_mode="STRIP",
    )
    if "FINISHED" not in result or not path.is_file():
        raise RuntimeError(f"the OBJ export did not finish: {result}")


def main(argv: list[str]) -> int:
    import bpy

    args = parse_args(argv)
    if not (args.fbx or args.obj):
        raise ValueError("nothing to do: give --fbx and/or --obj")
    t0 = time.monotonic()
    glb, out = Path(args.glb).absolute(), Path(args.output).absolute()
    if not out.is_dir():
        raise ValueError(f"the output folder {out} does not exist")
    objs = import_asset(glb)
    scene = bpy.context.scene
    set_resolution(scene, glb_json(glb), args.resolution)
    if objs["camera"] is not None:
        photo_film(objs["camera"], scene.render.resolution_x / scene.render.resolution_y)
    textures = Path(args.textures).absolute() if args.textures else glb.parent
    wrote = {"blender": bpy.app.version_string, "roughness_map": roughness_from_map(textures)}
    if args.fbx:
        export_fbx(objs, out / args.fbx)
        wrote["fbx"] = args.fbx
    if args.obj:
        export_obj(objs, out / args.obj, textures)
        wrote["obj"] = args.obj
        mtl = Path(args.obj).with_suffix(".mtl").name
        if (out / mtl).is_file():
            wrote["mtl"] = mtl
    wrote["parts"] = [o.name for o in objs["parts"]]
    wrote["seconds"] = round(time.monotonic() - t0, 2)
    print(json.dumps(wrote))
    return 0


if __name__ == "__main__":
    run(main, "asset_export.py")
