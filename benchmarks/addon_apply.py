"""Time to apply one 1024 x 1024 engine preview into a Blender image (goal: < 50 ms).

Two parts, as the add-on splits them:
- convert (worker thread): engine rgba8 bytes, row 0 = top -> float32 pixels, row 0 = bottom;
- apply (main thread, the part that can stall Blender's UI): ``image.pixels.foreach_set`` + ``update``.

    python benchmarks/addon_apply.py [--size 1024] [--repeats 20]

Runs in the bpy module (BLENDER_USER_RESOURCES is pointed at a temp folder).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ["BLENDER_USER_RESOURCES"] = tempfile.mkdtemp(prefix="texbridge-bench-")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GOAL_MS = 50.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args(argv)

    import bpy  # noqa: F401  (the bpy module stands in for Blender)
    import numpy as np

    from blender_addon import materials

    n = args.size
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (n, n, 4), dtype=np.uint8).tobytes() for _ in range(2)]
    img = materials.new_image("bench", n, n)
    conv, apply_, total = [], [], []
    for i in range(args.repeats + 1):
        data = frames[i % 2]
        t0 = time.perf_counter()
        px = materials.rgba8_to_pixels(data, n, n)
        t1 = time.perf_counter()
        materials.apply_pixels(img, px, n, n)
        t2 = time.perf_counter()
        if i:  # the first round warms up allocations
            conv.append((t1 - t0) * 1e3)
            apply_.append((t2 - t1) * 1e3)
            total.append((t2 - t0) * 1e3)

    check = np.empty(n * n * 4, np.float32)
    img.pixels.foreach_get(check)
    assert np.allclose(check, px, atol=1 / 255), "applied pixels differ from the preview"

    med = statistics.median
    print(f"apply {n}x{n} preview: main-thread apply median {med(apply_):.1f} ms (min {min(apply_):.1f}), "
          f"worker convert median {med(conv):.1f} ms, both {med(total):.1f} ms; goal < {GOAL_MS:.0f} ms "
          f"-> {'OK' if med(apply_) < GOAL_MS else 'MISSED'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
