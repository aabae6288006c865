#!/usr/bin/env python3
"""Side-by-side geometry comparison: Open3D TSDF fusion vs `pano train`, on the same sequence.

One run:
  1. makes sure Open3D (CPU wheel `open3d-cpu`) can be imported, installing it with pip when not;
  2. builds `pano` in release (unless --pano PATH);
  3. generates the synthetic room with `pano demo` (unless --sequence DIR);
  4. fuses the sequence with Open3D's ScalableTSDFVolume (or, when a self-check shows that class integrates
     nothing, as in open3d 0.20.0, with Open3D's CPU VoxelBlockGrid TSDF) and writes OUT/tsdf_mesh.ply;
  5. trains pano's geometry field on it (`pano train`), which writes OUT/pano/mesh.ply;
  6. evaluates both meshes identically with `pano eval geometry ... --json` and prints one table.

Only pano's own sequence format is read by the Open3D half (sequence.json, rgb/, depth/, poses.txt);
`pano convert` turns other layouts into it. See tools/README.md.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OPEN3D_PIP = "open3d-cpu==0.20.0"
DEPTH_TRUNC_M = 8.0
SDF_TRUNC_VOXELS = 4
TAIL_LINES = 25


class Failure(Exception):
    """A step failed; the message is printed as is and the script exits with status 1."""


def say(msg: str) -> None:
    print(msg, flush=True)


def tail(text: str, n: int = TAIL_LINES) -> str:
    # Progress bars redraw with carriage returns; keep only what the last redraw left on each line.
    lines = [ln.split("\r")[-1] for ln in text.splitlines()]
    lines = [ln for ln in lines if ln.strip()]
    return "\n".join("    " + ln for ln in lines[-n:])


def run(cmd: list[str], name: str, log_dir: Path, cwd: Path | None = None) -> tuple[str, float]:
    """Runs `cmd`, stdout and stderr to LOG_DIR/NAME.{out,err}; returns (stdout, wall seconds).

    On a non-zero exit raises Failure with the tail of stderr (or of stdout when stderr is empty)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    out_path, err_path = log_dir / f"{name}.out", log_dir / f"{name}.err"
    say(f"$ {shlex.join(cmd)}" + (f"   (in {cwd})" if cwd else "") + f"   [log: {err_path}]")
    start = time.perf_counter()
    try:
        with open(out_path, "w") as out, open(err_path, "w") as err:
            rc = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=err, stdin=subprocess.DEVNULL).returncode
    except FileNotFoundError as e:
        raise Failure(f"{name}: cannot run {cmd[0]!r}: {e.strerror}") from None
    except KeyboardInterrupt:
        raise Failure(f"{name}: interrupted") from None
    wall = time.perf_counter() - start
    stdout = out_path.read_text(errors="replace")
    if rc != 0:
        stderr = err_path.read_text(errors="replace")
        what = "stderr" if stderr.strip() else "stdout"
        shown = tail(stderr if stderr.strip() else stdout)
        detail = (f"  last lines of its {what} (full logs: {out_path}, {err_path}):\n{shown}" if shown
                  else "  it printed nothing")
        raise Failure(f"{name} failed (exit status {rc}) after {wall:.1f} s: {shlex.join(cmd)}\n{detail}")
    return stdout, wall


# --- 1. Open3D -------------------------------------------------------------------------------------------------

def ensure_open3d():
    try:
        import open3d  # noqa: F401
        return open3d
    except ImportError:
        pass
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", OPEN3D_PIP]
    say(f"open3d is not importable; installing it: {shlex.join(cmd)}")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise Failure(f"pip install {OPEN3D_PIP} failed (exit status {proc.returncode}):\n"
                      f"{tail(proc.stderr or proc.stdout) or '    (no output)'}")
    importlib.invalidate_caches()
    try:
        import open3d
    except ImportError as e:
        raise Failure(f"{OPEN3D_PIP} was installed but `import open3d` still fails: {e}") from None
    say(f"installed open3d {open3d.__version__}")
    return open3d


# --- 2./3. pano and the sequence ---------------------------------------------------------------------------------

def build_pano(log_dir: Path) -> Path:
    if shutil.which("swift") is None:
        raise Failure("`swift` is not on PATH: install the Swift toolchain or pass --pano PATH to a built pano")
    run(["swift", "build", "-c", "release", "--product", "pano"], "build", log_dir, cwd=REPO)
    bin_dir, _ = run(["swift", "build", "-c", "release", "--show-bin-path"], "bin-path", log_dir, cwd=REPO)
    pano = Path(bin_dir.strip().splitlines()[-1]) / "pano"
    if not pano.is_file():
        raise Failure(f"the build succeeded but {pano} does not exist")
    return pano


def generate_sequence(pano: Path, out: Path, frames: int, log_dir: Path) -> Path:
    demo_dir = out / "demo"
    run([str(pano), "demo", "--out", str(demo_dir), "--frames", str(frames)], "demo", log_dir)
    seq = demo_dir / "sequence"
    if not (seq / "sequence.json").is_file():
        raise Failure(f"`pano demo` exited 0 but wrote no {seq / 'sequence.json'}")
    return seq


# --- 4. Open3D TSDF ----------------------------------------------------------------------------------------------

def read_sequence(seq: Path):
    """Manifest of a sequence in pano's format: (width, height, fx, fy, cx, cy, depth_scale, rgb_ext, poses)."""
    manifest_path = seq / "sequence.json"
    if not manifest_path.is_file():
        raise Failure(f"{manifest_path} not found: the Open3D half reads only pano's own sequence format "
                      f"(convert other layouts with `pano convert SRC --out DIR`)")
    try:
        m = json.loads(manifest_path.read_text())
        width, height = int(m["width"]), int(m["height"])
        if "intrinsics" in m:
            intr = m["intrinsics"]
        else:
            calib_path = seq / m["calibration"]
            calib = json.loads(calib_path.read_text())
            intr = calib["intrinsics"]
            if (int(calib["width"]), int(calib["height"])) != (width, height):
                raise Failure(f"{calib_path} is for {calib['width']}x{calib['height']}, "
                              f"the sequence is {width}x{height}")
        fx, fy, cx, cy = (float(intr[k]) for k in ("fx", "fy", "cx", "cy"))
        depth_scale = float(m["depth_scale"])
        rgb_ext = {"png": "png", "jpg": "jpg", "jpeg": "jpg"}[str(m.get("rgb_format", "png")).lower()]
        frame_count = int(m["frame_count"])
    except Failure:
        raise
    except (KeyError, ValueError, TypeError, OSError, json.JSONDecodeError) as e:
        raise Failure(f"cannot read the manifest {manifest_path}: {type(e).__name__}: {e}") from None

    poses = {}
    poses_path = seq / "poses.txt"
    if not poses_path.is_file():
        raise Failure(f"{poses_path} not found")
    for lineno, line in enumerate(poses_path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        t = line.split()
        if len(t) != 14:
            raise Failure(f"{poses_path}:{lineno}: expected 14 numbers (index timestamp r00 .. tz), got {len(t)}")
        try:
            index, values = int(t[0]), [float(v) for v in t[2:]]
        except ValueError as e:
            raise Failure(f"{poses_path}:{lineno}: {e}") from None
        poses[index] = values
    return width, height, fx, fy, cx, cy, depth_scale, rgb_ext, frame_count, poses


class ScalableBackend:
    """open3d.pipelines.integration.ScalableTSDFVolume (the legacy CPU TSDF)."""
    label = "Open3D ScalableTSDFVolume"

    def __init__(self, o3d, voxel: float, width: int, height: int, fx: float, fy: float, cx: float, cy: float):
        self.o3d = o3d
        self.intrinsic = o3d.camera.PinholeCameraIntrinsic(width, height, fx, fy, cx, cy)
        self.volume = o3d.pipelines.integration.ScalableTSDFVolume(
            voxel_length=voxel, sdf_trunc=SDF_TRUNC_VOXELS * voxel,
            color_type=o3d.pipelines.integration.TSDFVolumeColorType.RGB8)

    def integrate(self, color, depth, depth_scale: float, extrinsic) -> None:
        o3d = self.o3d
        rgbd = o3d.geometry.RGBDImage.create_from_color_and_depth(
            o3d.geometry.Image(color), o3d.geometry.Image(depth), depth_scale=depth_scale,
            depth_trunc=DEPTH_TRUNC_M, convert_rgb_to_intensity=False)
        self.volume.integrate(rgbd, self.intrinsic, extrinsic)

    def extract(self):
        return self.volume.extract_triangle_mesh()


class VoxelBlockGridBackend:
    """open3d.t.geometry.VoxelBlockGrid on the CPU: Open3D's current TSDF, same voxel, truncation and depth cut-off."""
    label = "Open3D VoxelBlockGrid TSDF"

    def __init__(self, o3d, voxel: float, width: int, height: int, fx: float, fy: float, cx: float, cy: float):
        import numpy as np
        self.o3d, self.core = o3d, o3d.core
        self.device = self.core.Device("CPU:0")
        self.K = self.core.Tensor(np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=np.float64))
        f32 = self.core.float32
        # block_count is the hash map's initial capacity; it grows on the CPU.
        self.grid = o3d.t.geometry.VoxelBlockGrid(("tsdf", "weight", "color"), (f32, f32, f32), ((1), (1), (3)),
                                                  voxel, 16, 20000, self.device)

    def integrate(self, color, depth, depth_scale: float, extrinsic) -> None:
        t = self.o3d.t.geometry
        d, c = t.Image(self.core.Tensor(depth)), t.Image(self.core.Tensor(color))
        E = self.core.Tensor(extrinsic)
        blocks = self.grid.compute_unique_block_coordinates(d, self.K, E, depth_scale, DEPTH_TRUNC_M,
                                                            float(SDF_TRUNC_VOXELS))
        self.grid.integrate(blocks, d, c, self.K, E, depth_scale, DEPTH_TRUNC_M, float(SDF_TRUNC_VOXELS))

    def extract(self):
        # weight >= 1: every voxel observed at least once, as ScalableTSDFVolume meshes any observed voxel.
        return self.grid.extract_triangle_mesh(weight_threshold=1.0).to_legacy()


def scalable_tsdf_works(o3d) -> bool:
    """One frame of a plane 2 m in front of the camera must give a mesh. open3d(-cpu) 0.20.0's ScalableTSDFVolume
    gives none for any input: it locates the blocks to update from depth scaled once more by 1/1000, so it updates
    blocks around the camera centre only."""
    import numpy as np
    w, h = 64, 48
    probe = ScalableBackend(o3d, 0.05, w, h, 50.0, 50.0, (w - 1) / 2, (h - 1) / 2)
    probe.integrate(np.full((h, w, 3), 128, np.uint8), np.full((h, w), 2000, np.uint16), 1000.0, np.eye(4))
    return len(probe.extract().triangles) > 0


def open3d_tsdf(o3d, seq: Path, voxel: float, mesh_path: Path, backend_name: str) -> dict:
    import numpy as np

    width, height, fx, fy, cx, cy, depth_scale, rgb_ext, frame_count, poses = read_sequence(seq)
    if backend_name == "auto":
        if scalable_tsdf_works(o3d):
            backend_name = "scalable"
        else:
            say(f"  open3d {o3d.__version__}: ScalableTSDFVolume integrates nothing (self-check on a plane gave an "
                f"empty mesh; it is broken in this release), using the CPU VoxelBlockGrid TSDF instead "
                f"(--open3d-backend scalable forces the old one)")
            backend_name = "voxelblockgrid"
    backend_class = {"scalable": ScalableBackend, "voxelblockgrid": VoxelBlockGridBackend}[backend_name]
    backend = backend_class(o3d, voxel, width, height, fx, fy, cx, cy)

    # Decoding is timed apart: the comparison is about fusion and meshing.
    load_s = integrate_s = 0.0
    used = skipped = 0
    for i in range(frame_count):
        pose = poses.get(i)
        if pose is None or not all(math.isfinite(v) for v in pose):
            say(f"  open3d: frame {i}: no finite pose in poses.txt, skipped")
            skipped += 1
            continue
        T_W_C = np.eye(4)
        T_W_C[:3, :] = np.asarray(pose, dtype=np.float64).reshape(3, 4)
        try:
            extrinsic = np.linalg.inv(T_W_C)  # Open3D integrates with world-to-camera
        except np.linalg.LinAlgError:
            say(f"  open3d: frame {i}: singular pose, skipped")
            skipped += 1
            continue
        rgb_path, depth_path = seq / "rgb" / f"{i:06d}.{rgb_ext}", seq / "depth" / f"{i:06d}.png"
        t0 = time.perf_counter()
        for p in (rgb_path, depth_path):
            if not p.is_file():
                raise Failure(f"open3d: frame {i}: {p} not found")
        c = np.asarray(o3d.io.read_image(str(rgb_path)))
        d = np.asarray(o3d.io.read_image(str(depth_path)))
        if d.dtype != np.uint16 or d.ndim != 2:
            raise Failure(f"open3d: frame {i}: {depth_path} is not a 16-bit grey PNG (read as {d.dtype}, shape {d.shape})")
        if c.ndim == 2:  # grey: make it RGB
            c = np.repeat(c[:, :, None], 3, axis=2)
        if c.dtype != np.uint8 or c.shape[2] < 3:
            raise Failure(f"open3d: frame {i}: {rgb_path} is not 8-bit RGB (read as {c.dtype}, shape {c.shape})")
        c = np.ascontiguousarray(c[:, :, :3])
        if c.shape[:2] != (height, width) or d.shape != (height, width):
            raise Failure(f"open3d: frame {i}: images are {c.shape[1]}x{c.shape[0]} (rgb) and {d.shape[1]}x{d.shape[0]} "
                          f"(depth), sequence.json says {width}x{height}")
        t1 = time.perf_counter()
        backend.integrate(c, d, depth_scale, extrinsic)
        t2 = time.perf_counter()
        load_s += t1 - t0
        integrate_s += t2 - t1
        used += 1
    if used == 0:
        raise Failure(f"open3d: no frame of {seq} could be integrated")

    t0 = time.perf_counter()
    mesh = backend.extract()
    extract_s = time.perf_counter() - t0
    if len(mesh.triangles) == 0:
        hint = ("this Open3D's ScalableTSDFVolume may be broken: try --open3d-backend auto"
                if backend_name == "scalable" else "check depth_scale and the poses")
        raise Failure(f"open3d: the {backend.label} mesh is empty ({hint})")
    mesh.compute_vertex_normals()
    mesh_path.parent.mkdir(parents=True, exist_ok=True)
    # pano reads binary little-endian PLY only.
    if not o3d.io.write_triangle_mesh(str(mesh_path), mesh, write_ascii=False, compressed=False):
        raise Failure(f"open3d: cannot write {mesh_path}")
    say(f"  open3d ({backend.label}): {used} frames integrated ({skipped} skipped), {len(mesh.vertices)} vertices, "
        f"{len(mesh.triangles)} triangles; read {load_s:.2f} s, integrate {integrate_s:.2f} s, "
        f"extract {extract_s:.2f} s -> {mesh_path}")
    return {"wall": integrate_s + extract_s, "frames": used, "load": load_s, "label": backend.label,
            "integrate": integrate_s, "extract": extract_s}


# --- 5./6. pano train and eval -----------------------------------------------------------------------------------

def pano_train(pano: Path, seq: Path, out_dir: Path, voxel: float, seconds: float, iterations: int | None,
               log_dir: Path) -> dict:
    cmd = [str(pano), "train", str(seq), "--out", str(out_dir), "--voxel", f"{voxel:g}", "--seconds", f"{seconds:g}"]
    if iterations is not None:
        cmd += ["--iterations", str(iterations)]
    say(f"  pano train: time budget {seconds:g} s (plus loading, meshing and its own evaluation)")
    _, wall = run(cmd, "pano-train", log_dir)
    mesh = out_dir / "mesh.ply"
    if not mesh.is_file():
        raise Failure(f"`pano train` exited 0 but wrote no {mesh}")
    info = {"wall": wall, "mesh": mesh}
    try:
        report = json.loads((out_dir / "report.json").read_text())
        info["steps"], info["train"] = report.get("steps"), report.get("trainSeconds")
    except (OSError, json.JSONDecodeError) as e:
        say(f"  note: cannot read {out_dir / 'report.json'} ({e}); steps and training time are not shown")
    return info


def evaluate(pano: Path, mesh: Path, seq: Path, name: str, log_dir: Path) -> dict:
    gt = seq / "gt" / "surface.ply"
    stdout, _ = run([str(pano), "eval", "geometry", str(mesh), str(gt), "--sequence", str(seq), "--json"],
                    f"eval-{name}", log_dir)
    start = stdout.find("{")
    try:
        report = json.loads(stdout[start:]) if start >= 0 else None
        metrics = report["metrics"]
        return {k: float(metrics[k]) for k in ("accuracy", "completion", "chamferL1", "precision", "recall", "f1",
                                                "threshold")}
    except (TypeError, KeyError, ValueError, json.JSONDecodeError) as e:
        raise Failure(f"cannot read the JSON of `pano eval geometry` for {mesh} ({type(e).__name__}: {e}); "
                      f"its stdout:\n{tail(stdout) or '    (empty)'}") from None


def print_table(rows: list[tuple[str, float, float, dict | None]]) -> None:
    head = ["system", "voxel (m)", "wall (s)", "Acc (cm)", "Comp (cm)", "Chamfer-L1 (cm)", "Prec (%)", "Recall (%)",
            "F1 (%)"]
    body = []
    for system, voxel, wall, m in rows:
        if m is None:
            metrics = ["-"] * 6
        else:
            metrics = [f"{m['accuracy'] * 100:.2f}", f"{m['completion'] * 100:.2f}", f"{m['chamferL1'] * 100:.2f}",
                       f"{m['precision'] * 100:.1f}", f"{m['recall'] * 100:.1f}", f"{m['f1'] * 100:.1f}"]
        body.append([system, f"{voxel:g}", f"{wall:.1f}"] + metrics)
    widths = [max(len(r[c]) for r in [head] + body) for c in range(len(head))]
    fmt = lambda r: "  ".join(v.ljust(w) if c == 0 else v.rjust(w) for c, (v, w) in enumerate(zip(r, widths)))
    say("")
    say(fmt(head))
    say("  ".join("-" * w for w in widths))
    for r in body:
        say(fmt(r))


def main() -> int:
    ap = argparse.ArgumentParser(
        description="Open3D TSDF fusion vs pano's geometry trainer on the same sequence, evaluated the same way.")
    ap.add_argument("--out", default="out/compare", help="output directory (default: out/compare)")
    ap.add_argument("--voxel", type=float, default=0.02, help="voxel size in metres for both systems (default 0.02)")
    ap.add_argument("--seconds", type=float, default=120, help="pano train time budget in seconds (default 120)")
    ap.add_argument("--iterations", type=int, default=None,
                    help="pano train step bound (default: pano's own)")
    ap.add_argument("--open3d-backend", choices=("auto", "scalable", "voxelblockgrid"), default="auto",
                    help="Open3D TSDF: ScalableTSDFVolume, the CPU VoxelBlockGrid, or auto (ScalableTSDFVolume when a "
                         "self-check shows it works, else VoxelBlockGrid; default)")
    ap.add_argument("--frames", type=int, default=60, help="frames of the generated sequence (default 60)")
    ap.add_argument("--sequence", help="use this sequence (pano format, with gt/surface.ply) instead of generating one")
    ap.add_argument("--pano", help="use this pano binary instead of building one")
    args = ap.parse_args()
    if not (args.voxel > 0 and math.isfinite(args.voxel)):
        ap.error("--voxel must be a positive number of metres")
    if not args.seconds > 0:
        ap.error("--seconds must be positive")
    if args.frames < 1:
        ap.error("--frames must be at least 1")

    out = Path(args.out).resolve()
    log_dir = out / "logs"
    try:
        o3d = ensure_open3d()
        say(f"open3d {o3d.__version__}")

        if args.pano:
            pano = Path(args.pano).resolve()
            if not pano.is_file():
                raise Failure(f"--pano {args.pano}: no such file")
        else:
            pano = build_pano(log_dir)
        say(f"pano: {pano}")

        if args.sequence:
            seq = Path(args.sequence).resolve()
            if not seq.is_dir():
                raise Failure(f"--sequence {args.sequence}: no such directory")
        else:
            seq = generate_sequence(pano, out, args.frames, log_dir)
        gt = seq / "gt" / "surface.ply"
        if not gt.is_file():
            raise Failure(f"{gt} not found: the comparison needs a sequence with ground-truth surface samples "
                          f"(a synthetic one from `pano demo`)")
        say(f"sequence: {seq}")

        say("open3d TSDF fusion ...")
        tsdf_mesh = out / "tsdf_mesh.ply"
        tsdf = open3d_tsdf(o3d, seq, args.voxel, tsdf_mesh, args.open3d_backend)

        say("pano train ...")
        trained = pano_train(pano, seq, out / "pano", args.voxel, args.seconds, args.iterations, log_dir)

        say("evaluating both meshes with `pano eval geometry` ...")
        m_tsdf = evaluate(pano, tsdf_mesh, seq, "open3d", log_dir)
        m_pano = evaluate(pano, trained["mesh"], seq, "pano", log_dir)
    except Failure as e:
        print(f"compare_tsdf: error: {e}", file=sys.stderr, flush=True)
        return 1

    print_table([(tsdf["label"], args.voxel, tsdf["wall"], m_tsdf),
                 ("pano train", args.voxel, trained["wall"], m_pano)])
    say("")
    say(f"Open3D wall = integration of {tsdf['frames']} frames + mesh extraction "
        f"(image decoding, {tsdf['load']:.1f} s, not counted); "
        f"pano wall = the whole `pano train` process (loading, "
        + (f"{trained['steps']} steps in {trained['train']:.1f} s, " if trained.get("steps") is not None
           and trained.get("train") is not None else "training, ")
        + "meshing, its own evaluation).")
    say(f"Precision / recall threshold {m_tsdf['threshold'] * 100:g} cm; both meshes culled to what the sequence sees. "
        f"Meshes: {tsdf_mesh}, {trained['mesh']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
