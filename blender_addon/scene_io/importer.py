"""Import an avatar bundle: collection, head mesh (UVs, material, shape keys), landmarks, photo camera with the
photo behind it, and the depth / normal / matte images."""

from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np
from mathutils import Matrix

from .. import conventions as cv
from ..arkit import canonical_name
from ..bundle import Bundle
from ..gltf_mesh import GltfUnsupported, MeshData, read_glb
from . import lod
from .common import (
    PROP,
    ROLE,
    AvatarScene,
    apply_camera_params,
    apply_render_size,
    link_object,
    load_image,
    set_camera_background,
)


def import_bundle(
    context,
    bundle: Bundle,
    *,
    photo_path: str = "",
    photo_image: bpy.types.Image | None = None,
    avatar_id: str = "",
    engine_url: str = "",
    set_render_size: bool = True,
    set_active_camera: bool = True,
) -> AvatarScene:
    """Build the avatar's collection in ``context.scene`` from a bundle folder. The camera background is
    ``photo_image``, else the photo at ``photo_path``, else the bundle's photo, else one rebuilt from its crop."""
    scene = context.scene
    name = bundle.name
    coll = bpy.data.collections.new(f"Likeness {name}")
    scene.collection.children.link(coll)
    m = bundle.manifest
    intr = bundle.photo_intrinsics
    coll[PROP] = {
        "bundle_dir": str(bundle.path.resolve()),
        "avatar_id": avatar_id,
        "engine_url": engine_url,
        "engine_version": str(m.get("engine_version", "")),
        "input_name": str(m.get("input", {}).get("name", "")),
        "quality": bundle.quality,
        "created": str(m.get("created", "")),
        "photo_width": intr.width,
        "photo_height": intr.height,
    }

    head = _import_head(bundle, coll, name)
    warnings: list[str] = []
    _import_asset(bundle, coll, name, warnings)
    landmarks = _make_landmarks(bundle, coll, head, name)
    camera = _make_photo_camera(bundle, coll, name, photo_path, photo_image)
    for key, label in (("depth_exr", "depth"), ("normal", "normal"), ("alpha", "matte")):
        path = bundle.file(key)
        if path is not None:
            img = load_image(path, f"{name} {label}", non_color=True)
            img.use_fake_user = True  # keep the maps in the .blend although nothing uses them yet
            img[PROP] = {"bundle_key": key, "camera": "work", "crop_box_px": list(bundle.crop_box_px)}

    if set_render_size:
        apply_render_size(scene, cv.camera_params_from_intrinsics(intr))
    if set_active_camera:
        scene.camera = camera
    return AvatarScene(coll, head, camera, landmarks, warnings)


def _import_head(bundle: Bundle, coll: bpy.types.Collection, name: str) -> bpy.types.Object:
    glb = bundle.file("glb")
    if glb is not None:
        try:
            data = read_glb(glb)
        except GltfUnsupported:
            return _import_with_blender(coll, name, glb, "gltf")
        mesh = mesh_from_data(f"{name} head", data)
    else:
        return _import_with_blender(coll, name, bundle.file("obj"), "obj")
    head = link_object(bpy.data.objects.new(f"{name} head", mesh), coll, "head")
    texture = bundle.file("texture")
    mesh.materials.append(head_material(f"{name} head", load_image(texture, f"{name} texture") if texture else None))
    if data.morphs:
        add_shape_keys(head, data)
    return head


def _import_asset(
    bundle: Bundle, coll: bpy.types.Collection, name: str, warnings: list[str]
) -> bpy.types.Collection | None:
    """The bundle's artist asset (asset/head.glb: skin with the 52 ARKit shape keys, eyes, teeth, tongue, the
    armature, the photo camera), when it has one, in a child collection ``{name} asset`` (role ``asset``); objects
    are named ``{name} asset <part>`` and carry the role ``asset_<part>``; the collection starts hidden (below).
    The subdivided skins the bundle has (``asset_subd1_glb``, ``asset_subd2_glb``) join it as levels of detail
    (scene_io/lod.py), level 0 shown; the shape keys of every other mesh in it are driven by level 0's skin's.
    A level that does not import is left out with a warning in ``warnings``.
    Bundles without an asset: nothing."""
    glb = bundle.file("asset_glb")
    if glb is None:
        return None
    sub = bpy.data.collections.new(f"{name} asset")
    sub[ROLE] = lod.ASSET_ROLE
    coll.children.link(sub)
    before, colls = set(bpy.data.objects), set(bpy.data.collections)
    bpy.ops.import_scene.gltf(filepath=str(glb))
    new = [o for o in bpy.data.objects if o not in before]
    # Blender's glTF importer draws bones with a 2 m icosphere object it leaves in the scene: a custom bone
    # shape needs no collection, and left in one it covers every render.
    shapes = {pb.custom_shape for o in new if o.type == "ARMATURE" for pb in o.pose.bones if pb.custom_shape}
    for o in new:
        for c in list(o.users_collection):
            c.objects.unlink(o)
        if o in shapes:
            continue
        sub.objects.link(o)
        part = o.name.split(".")[0]
        o.name = f"{name} asset {part}"
        o[ROLE] = f"asset_{part}"
    lod.remove_new_empty_collections(colls | {sub})
    base = next((o for o in sub.objects if o.get(ROLE) == "asset_skin" and o.type == "MESH"), None)
    if base is not None:
        base[lod.LOD_PROP] = 0
        for o in sub.objects:  # one set of sliders: the eyes', teeth's and tongue's keys follow the skin's
            if o.type == "MESH" and o is not base:
                lod.drive_shape_keys(o, base)
        for level in lod.LEVELS[1:]:
            path = bundle.file(f"asset_subd{level}_glb")
            if path is None:
                continue
            try:
                lod.import_lod(path, sub, name, level, base)
            except RuntimeError as exc:
                warnings.append(f"asset level {level} ({path.name}) left out: {' '.join(str(exc).split())[:200]}")
        lod.show_lod(sub, 0)
    # The scan head (the field's mesh, which the expression sliders and the neural render drive) and the asset
    # sit in the same place: the asset starts hidden (its eye in the outliner, and out of renders) so the two
    # never z-fight; the artist switches between them.
    sub.hide_render = True
    layer = lod.layer_collection(bpy.context.view_layer.layer_collection, sub)
    if layer is not None:
        layer.hide_viewport = True
    return sub


def _import_with_blender(coll, name: str, path: Path, kind: str) -> bpy.types.Object:
    """Fallback for files the built-in reader does not handle: Blender's own importers (glTF / OBJ, +Y up ->
    +Z up like ours), then the result is moved into the avatar collection."""
    before = set(bpy.data.objects)
    if kind == "gltf":
        bpy.ops.import_scene.gltf(filepath=str(path))
    else:
        bpy.ops.wm.obj_import(filepath=str(path), forward_axis="NEGATIVE_Z", up_axis="Y")
    new = [o for o in bpy.data.objects if o not in before]
    meshes = [o for o in new if o.type == "MESH"]
    if not meshes:
        raise RuntimeError(f"{path.name} holds no mesh")
    for o in new:
        for c in list(o.users_collection):
            c.objects.unlink(o)
        coll.objects.link(o)
    head = meshes[0]
    head.name = f"{name} head"
    head[ROLE] = "head"
    return head


def mesh_from_data(name: str, data: MeshData) -> bpy.types.Mesh:
    """A Blender mesh from engine-frame :class:`MeshData`: positions to Blender axes, UVs, smooth custom normals."""
    pos = _to_blender(data.positions)
    tris = np.asarray(data.triangles, np.int64)
    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(len(pos))
    mesh.vertices.foreach_set("co", pos.astype(np.float32).ravel())
    mesh.loops.add(tris.size)
    mesh.loops.foreach_set("vertex_index", tris.astype(np.int32).ravel())
    mesh.polygons.add(len(tris))
    mesh.polygons.foreach_set("loop_start", np.arange(0, tris.size, 3, dtype=np.int32))
    mesh.polygons.foreach_set("use_smooth", np.ones(len(tris), dtype=bool))
    if data.uv is not None:
        uv = mesh.uv_layers.new(name="UVMap")
        uv.data.foreach_set("uv", np.asarray(data.uv, np.float32)[tris.ravel()].ravel())
    mesh.update(calc_edges=True)
    mesh.validate(clean_customdata=False)
    if data.normals is not None:
        mesh.normals_split_custom_set_from_vertices([tuple(n) for n in _to_blender(data.normals)])
    return mesh


def add_shape_keys(obj: bpy.types.Object, data: MeshData) -> None:
    """One shape key per morph target (ARKit names in Apple's spelling), range 0..1, set to the target's default
    weight: a Likeness head's mesh is the neutral face and its defaults are the photo's expression, so the head
    looks like the photo on import (zero the keys for the neutral face)."""
    basis = obj.shape_key_add(name="Basis", from_mix=False)
    base = np.empty(len(basis.data) * 3, np.float32)
    basis.data.foreach_get("co", base)
    for target, delta in data.morphs.items():
        kb = obj.shape_key_add(name=canonical_name(target), from_mix=False)
        kb.data.foreach_set("co", base + _to_blender(delta).astype(np.float32).ravel())
        kb.slider_min, kb.slider_max = 0.0, 1.0
        kb.value = min(1.0, max(0.0, float(data.weights.get(target, 0.0))))


def _to_blender(points) -> np.ndarray:
    """(N, 3) engine-world vectors -> Blender axes: (x, y, z) -> (x, -z, y)."""
    p = np.asarray(points, np.float64)
    return np.stack([p[:, 0], -p[:, 2], p[:, 1]], axis=1)


def head_material(name: str, texture: bpy.types.Image | None) -> bpy.types.Material:
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    bsdf = next(n for n in nodes if n.type == "BSDF_PRINCIPLED")
    bsdf.inputs["Roughness"].default_value = 0.8
    bsdf.inputs["Specular IOR Level"].default_value = 0.2
    if texture is not None:
        tex = nodes.new("ShaderNodeTexImage")
        tex.image = texture
        tex.location = (-400, 300)
        links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
    return mat


def _make_landmarks(bundle: Bundle, coll, head, name: str) -> bpy.types.Object | None:
    """The 478 face landmarks as a vertex-only mesh parented to the head (snapping targets; the dolly zoom keeps
    their size). Hidden in viewport and render."""
    pts = bundle.landmarks_world()
    if not pts:
        return None
    mesh = bpy.data.meshes.new(f"{name} landmarks")
    mesh.from_pydata([cv.engine_to_blender_point(p) for p in pts], [], [])
    obj = link_object(bpy.data.objects.new(f"{name} landmarks", mesh), coll, "landmarks")
    obj.parent = head
    obj.hide_render = True
    obj.display_type = "WIRE"
    obj.hide_viewport = False
    obj["likeness_topology"] = "mediapipe-478"
    return obj


def _make_photo_camera(bundle: Bundle, coll, name: str, photo_path: str, photo_image) -> bpy.types.Object:
    intr = bundle.photo_intrinsics
    cam_data = bpy.data.cameras.new(f"{name} photo camera")
    apply_camera_params(cam_data, cv.camera_params_from_intrinsics(intr))
    cam = link_object(bpy.data.objects.new(f"{name} photo camera", cam_data), coll, "photo_camera")
    cam.matrix_world = Matrix(cv.cam2world_engine_to_blender(bundle.cam2world))
    cam["likeness_intrinsics"] = intr.to_dict()
    photo = photo_image or _photo_image(bundle, name, photo_path)
    if photo is not None:
        set_camera_background(cam, photo)
    return cam


def _photo_image(bundle: Bundle, name: str, photo_path: str) -> bpy.types.Image | None:
    """The whole photo: the given file, the bundle's ``photo`` file, or else the work crop pasted into a photo-sized
    frame (transparent outside the crop) so the camera background still lines up."""
    for path in (Path(photo_path) if photo_path else None, bundle.file("photo")):
        if path is not None and path.is_file():
            return load_image(path, f"{name} photo")
    crop = bundle.file("photo_crop")
    if crop is None:
        return None
    src = load_image(crop, f"{name} photo crop")
    w, h = src.size
    pix = np.empty(w * h * 4, np.float32)
    src.pixels.foreach_get(pix)
    pix = pix.reshape(h, w, 4)[::-1]  # Blender rows start at the bottom
    intr = bundle.photo_intrinsics
    x0, y0, side = bundle.crop_box_px
    k = w / side
    W, H = intr.width, intr.height
    us = (np.arange(W) + 0.5 - x0) * k - 0.5
    vs = (np.arange(H) + 0.5 - y0) * k - 0.5
    out = _bilinear(pix, vs[:, None], us[None, :])
    inside = ((us >= -0.5) & (us <= w - 0.5))[None, :] & ((vs >= -0.5) & (vs <= h - 0.5))[:, None]
    out[..., 3] = np.where(inside, 1.0, 0.0)
    img = bpy.data.images.new(f"{name} photo", W, H, alpha=True)
    img.pixels.foreach_set(out[::-1].astype(np.float32).ravel())
    img.pack()
    img[PROP] = {"note": "rebuilt from the bundle's photo_crop (the bundle does not carry the whole photo)"}
    bpy.data.images.remove(src)
    return img


def _bilinear(img: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    y = np.clip(np.broadcast_to(y, np.broadcast_shapes(y.shape, x.shape)), 0, h - 1)
    x = np.clip(np.broadcast_to(x, y.shape), 0, w - 1)
    y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy, fx = (y - y0)[..., None], (x - x0)[..., None]
    top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
    bottom = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
    return top * (1 - fy) + bottom * fy
