"""Small scene-building helpers for the add-on tests (real bpy)."""

from __future__ import annotations


def add_monkey(bpy, name: str = "Monkey", subdiv: int = 1, location=(0.0, 0.0, 0.0)):
    bpy.ops.mesh.primitive_monkey_add(location=location)
    obj = bpy.context.active_object
    obj.name = name
    if subdiv:
        mod = obj.modifiers.new("Subdivision", "SUBSURF")
        mod.levels = subdiv
    return obj


def activate(bpy, obj) -> None:
    vl = bpy.context.view_layer
    for o in vl.objects:
        o.select_set(False)
    obj.select_set(True)
    vl.objects.active = obj
