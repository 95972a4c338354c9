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


class StubLayout:
    """Records what ``draw_panel`` puts on screen (UILayout's calls used by the panel)."""

    def __init__(self, log=None):
        self.log = [] if log is None else log
        self.enabled = True

    def _child(self, *a, **k):
        return StubLayout(self.log)

    row = column = box = _child

    def prop(self, data, name, **k):
        assert hasattr(data, name), name

    def label(self, text="", **k):
        self.log.append(text)

    def operator(self, idname, text="", **k):
        self.log.append(f"[{text or idname}]")

    def progress(self, factor=0.0, type="BAR", text=""):
        self.log.append(f"progress {factor:.2f} {text}")
