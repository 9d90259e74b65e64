"""The artist asset's levels of detail: the skins of ``asset/head_subd1.glb`` / ``head_subd2.glb`` brought in beside
level 0's (the rest of those files -- eyes, teeth, tongue, armature, camera -- is level 0's again and discarded),
skinned to level 0's armature, their shape keys driven by level 0's; and which level shows. Main thread only.

Each skin carries ``object["likeness_lod"]`` = its subdivision level (0, 1, 2: higher is finer, unlike a game
engine's LOD index) and the role ``asset_skin`` (level 0) or ``asset_skin_lod<k>``; the asset collection carries
the role ``asset``. The shape keys of level k > 0 -- and of the eyes, teeth and tongue -- have drivers (type
Average, one Single Property variable, no Python expression, so no "Auto Run Python Scripts" is needed) reading the
same key of level 0's skin: its keys are the ones to set, key and animate (the panel's sliders, Live Link), and
every level and part shows the same expression. A driven key is read-only in the UI (purple); delete its driver to
set it on its own.
"""

from __future__ import annotations

from pathlib import Path

import bpy

from .common import ROLE, AvatarScene

LOD_PROP = "likeness_lod"
ASSET_ROLE = "asset"
LEVELS = (0, 1, 2)
_KINDS = (
    "objects",
    "collections",
    "meshes",
    "materials",
    "images",
    "textures",
    "armatures",
    "cameras",
    "actions",
    "node_groups",
)


def skin_role(level: int) -> str:
    return "asset_skin" if level == 0 else f"asset_skin_lod{level}"


def asset_collection(avatar: AvatarScene | None) -> bpy.types.Collection | None:
    """The avatar's ``{name} asset`` collection (role ``asset``; for files imported before the role existed, the
    child collection holding the ``asset_skin``), or None."""
    if avatar is None:
        return None
    children = list(avatar.collection.children_recursive)
    found = next((c for c in children if c.get(ROLE) == ASSET_ROLE), None)
    if found is None:
        found = next((c for c in children if any(o.get(ROLE) == "asset_skin" for o in c.objects)), None)
    return found


def lod_skins(coll: bpy.types.Collection | None) -> dict[int, bpy.types.Object]:
    """{level: skin object} of an asset collection; level 0 alone for an asset imported before LODs existed."""
    if coll is None:
        return {}
    out: dict[int, bpy.types.Object] = {}
    for o in coll.all_objects:
        if o.type != "MESH":
            continue
        level = o.get(LOD_PROP, 0 if o.get(ROLE) == "asset_skin" else None)
        if level in LEVELS and level not in out:
            out[int(level)] = o
    return dict(sorted(out.items()))


def show_lod(coll: bpy.types.Collection, level: int) -> bpy.types.Object:
    """Show the skin of ``level`` in viewport and render and hide the others'; returns the shown skin.
    ValueError for a level the asset does not have."""
    skins = lod_skins(coll)
    if level not in skins:
        have = ", ".join(str(k) for k in skins) or "none"
        raise ValueError(f"{coll.name} has no skin of level {level} (levels: {have})")
    for k, skin in skins.items():
        skin.hide_viewport = skin.hide_render = k != level
    return skins[level]


def shown_lod(coll: bpy.types.Collection | None) -> int | None:
    """The level whose skin is shown (not hidden in the viewport), the lowest if several; None if none is."""
    return next((k for k, o in lod_skins(coll).items() if not o.hide_viewport), None)


def layer_collection(root: bpy.types.LayerCollection, coll: bpy.types.Collection) -> bpy.types.LayerCollection | None:
    """The layer collection of ``coll`` under ``root`` (a view layer's ``layer_collection``), or None."""
    if root.collection == coll:
        return root
    for child in root.children:
        found = layer_collection(child, coll)
        if found is not None:
            return found
    return None


def asset_shown(view_layer: bpy.types.ViewLayer, coll: bpy.types.Collection | None) -> bool:
    """Whether the asset collection shows in ``view_layer``'s viewport."""
    lc = layer_collection(view_layer.layer_collection, coll) if coll is not None else None
    return lc is not None and not lc.hide_viewport and not lc.exclude


def show_asset(view_layer: bpy.types.ViewLayer, avatar: AvatarScene, show: bool = True) -> bpy.types.Collection:
    """Show the avatar's asset (its collection in the viewport of ``view_layer`` and in renders) and hide the scan
    head, or the other way round: the two sit in the same place and would z-fight. ValueError without an asset."""
    coll = asset_collection(avatar)
    if coll is None:
        raise ValueError(f"{avatar.name} has no asset (a bundle built before the asset stage, or without the prior)")
    coll.hide_render = not show
    lc = layer_collection(view_layer.layer_collection, coll)
    if lc is not None:
        lc.exclude = False
        lc.hide_viewport = not show
    head = avatar.head
    if head is not None:
        head.hide_render = show
        if head.name in view_layer.objects:
            head.hide_set(show, view_layer=view_layer)
    return coll


def import_lod(
    glb: Path, coll: bpy.types.Collection, name: str, level: int, base: bpy.types.Object
) -> bpy.types.Object:
    """Import ``glb`` (the asset with the skin subdivided ``level`` times) and keep only its skin, as
    ``{name} asset skin LOD<level>`` in ``coll``: parented and skinned to ``base``'s (level 0's) armature, with
    level 0's materials and shape keys driven by level 0's (:func:`drive_shape_keys`). Everything else the file
    brought is removed again, also when it fails (RuntimeError: the file does not import or has no skin)."""
    before = {kind: set(getattr(bpy.data, kind)) for kind in _KINDS}
    skin, ok = None, False
    try:
        bpy.ops.import_scene.gltf(filepath=str(glb))
        new = [o for o in bpy.data.objects if o not in before["objects"]]
        skin = next((o for o in new if o.type == "MESH" and o.name.split(".")[0] == "skin"), None)
        if skin is None or skin.data.shape_keys is None:
            raise RuntimeError(f"{glb.name} holds no skin mesh with shape keys")
        for c in list(skin.users_collection):
            c.objects.unlink(skin)
        coll.objects.link(skin)
        _adopt(skin, base)
        skin.name = skin.data.name = f"{name} asset skin LOD{level}"
        skin[ROLE] = skin_role(level)
        skin[LOD_PROP] = level
        drive_shape_keys(skin, base)
        ok = True
    finally:
        _remove_new(before, keep=skin if ok else None)
    return skin


def _adopt(skin: bpy.types.Object, base: bpy.types.Object) -> None:
    """Give ``skin`` ``base``'s place: the same parent (the armature), transform and armature modifier target,
    and ``base``'s materials (the levels share one UV layout and texture)."""
    skin.parent = base.parent
    skin.parent_type = base.parent_type
    skin.matrix_parent_inverse = base.matrix_parent_inverse.copy()
    skin.matrix_basis = base.matrix_basis.copy()
    rig = next((m.object for m in base.modifiers if m.type == "ARMATURE" and m.object is not None), base.parent)
    mods = [m for m in skin.modifiers if m.type == "ARMATURE"]
    if rig is not None and rig.type == "ARMATURE":
        if not mods:
            mods = [skin.modifiers.new("Armature", "ARMATURE")]
        for m in mods:
            m.object = rig
    mats = skin.data.materials
    for i, mat in enumerate(base.data.materials):
        if i < len(mats):
            mats[i] = mat
        else:
            mats.append(mat)


def drive_shape_keys(skin: bpy.types.Object, source: bpy.types.Object) -> int:
    """Drive each shape key of ``skin`` (but the basis) by the key of the same name on ``source``: an Average
    driver of one Single Property variable (the value as it is, no Python). Keys ``source`` lacks stay free.
    Returns the number driven."""
    src, dst = source.data.shape_keys, skin.data.shape_keys
    if src is None or dst is None:
        return 0
    n = 0
    for kb in list(dst.key_blocks)[1:]:
        sk = src.key_blocks.get(kb.name)
        if sk is None:
            continue
        kb.slider_min, kb.slider_max = sk.slider_min, sk.slider_max
        kb.value = sk.value
        kb.driver_remove("value")
        driver = kb.driver_add("value").driver
        driver.type = "AVERAGE"
        var = driver.variables.new()
        var.name, var.type = "level0", "SINGLE_PROP"
        target = var.targets[0]
        target.id_type = "KEY"
        target.id = src
        target.data_path = sk.path_from_id("value")
        n += 1
    return n


def driven_paths(id_data) -> set[str]:
    """The data paths of ``id_data`` that have a driver."""
    anim = getattr(id_data, "animation_data", None)
    return {fc.data_path for fc in anim.drivers} if anim is not None else set()


def remove_new_empty_collections(before: set) -> None:
    """Remove the collections made since ``before`` (a set of ``bpy.data.collections``) that hold nothing: the
    glTF importer's ``glTF_not_exported``, once the objects were moved out of it."""
    for c in [c for c in bpy.data.collections if c not in before and not c.objects and not c.children]:
        bpy.data.collections.remove(c)


def _remove_new(before: dict[str, set], keep: bpy.types.Object | None) -> None:
    """Remove the objects made since ``before`` but ``keep``, then the datablocks made since then that nothing
    uses any more (meshes, materials, images, ... of the discarded objects)."""
    kept = {keep, keep.data} if keep is not None else set()
    for o in [o for o in bpy.data.objects if o not in before["objects"] and o not in kept]:
        bpy.data.objects.remove(o)
    remove_new_empty_collections(before["collections"])
    removed = True
    while removed:  # a material freed frees its images, and so on
        removed = False
        for kind in _KINDS[2:]:
            store = getattr(bpy.data, kind)
            for block in [b for b in store if b not in before[kind] and b not in kept and b.users == 0]:
                store.remove(block)
                removed = True
