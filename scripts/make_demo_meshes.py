"""Write a few procedural demo meshes (OBJ) with known parts: python scripts/make_demo_meshes.py OUT_DIR"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model_runtime.training.procedural import make_shape  # noqa: E402


def write_obj(path: Path, vertices, faces) -> None:
    lines = [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in vertices]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in faces]
    path.write_text("\n".join(lines) + "\n")


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "out/demo/meshes")
    out.mkdir(parents=True, exist_ok=True)
    for name, category, seed in (("chair", "chair", 11), ("table", "table", 5), ("lamp", "lamp", 3)):
        shape = make_shape(seed, category=category, welded=False)
        write_obj(out / f"{name}.obj", shape.vertices, shape.faces)
        print(f"{out / (name + '.obj')}: {len(shape.faces)} faces, {shape.n_leaves} parts")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
