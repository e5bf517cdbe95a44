"""The installed `anomalyforge` console script, run the way a user runs it: a separate process, its output and files."""
import csv, io, json, os, shutil, subprocess, sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CLI = Path(sys.executable).parent / "anomalyforge"
SUBCOMMANDS = {  # subcommand -> options its --help must mention
    "list": [],
    "fit": ["--data", "--category", "--out", "--image-size", "--keep-aspect", "--set", "detector"],
    "train": ["--data", "--category", "--synthetic", "--out", "--image-size", "--keep-aspect", "--set", "detector"],
    "predict": ["--out", "--maps", "checkpoint", "images"],
    "evaluate": ["--data", "--category", "--out", "checkpoint"],
    "demo": ["--out", "--detector", "--quick", "--set"],
}
DEFECTS = ("foreign", "hole", "scratch", "stain")


def run(env, *argv, timeout=300, prefix=()) -> subprocess.CompletedProcess:
    "The console script with `argv`, run after the command words `prefix` (e.g. a limit on file sizes), as a finished process."
    assert CLI.exists(), f"{CLI} is missing: pip install -e . installs the console script"
    return subprocess.run([*prefix, str(CLI), *map(str, argv)], env=env, capture_output=True, text=True, timeout=timeout)


# Each command spends seconds importing torch and timm: independent commands run a few at a time, and the
# minute-long demo is started first and checked last, so the other commands run beside it.
_POOL = ThreadPoolExecutor(max_workers=3)

def start(env, *argv, timeout=300, prefix=()):
    "`run` in the background: a Future of the finished process."
    return _POOL.submit(run, env, *argv, timeout=timeout, prefix=prefix)


@pytest.fixture(scope="module", autouse=True)
def demo_run(request, user_env, tmp_path_factory):
    "`anomalyforge demo --quick`, started before the other tests of this file when its test is selected: (Future, output folder)."
    if not any(item.name == "test_demo_quick" for item in request.session.items): return None
    out = tmp_path_factory.mktemp("cli-demo") / "demo"
    return start(user_env, "demo", "--quick", "--out", out, timeout=500), out


def ok(proc) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


# -- help and list -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def helps(user_env):
    "`anomalyforge --help` (key None) and `anomalyforge CMD --help` for every subcommand, run side by side."
    return {cmd: start(user_env, *([cmd] if cmd else []), "--help") for cmd in [None, *SUBCOMMANDS]}


def test_help(helps):
    out = ok(helps[None].result()).stdout
    assert out.startswith("usage: anomalyforge")
    for cmd in SUBCOMMANDS: assert cmd in out, f"--help does not mention the subcommand {cmd}"


@pytest.mark.parametrize("cmd", SUBCOMMANDS)
def test_subcommand_help(helps, cmd):
    out = ok(helps[cmd].result()).stdout
    assert out.startswith(f"usage: anomalyforge {cmd}"), out
    for opt in SUBCOMMANDS[cmd]: assert opt in out, f"`anomalyforge {cmd} --help` does not mention {opt}"


def test_list_shows_patchknn(user_env):
    lines = ok(run(user_env, "list")).stdout.splitlines()
    knn = [l for l in lines if l.startswith("patchknn:")]
    assert len(knn) == 1, lines
    assert "coreset_ratio=" in knn[0] and "backbone='efficientnet_lite0'" in knn[0], knn[0]


# -- fit -> evaluate -> predict ------------------------------------------------------------------

@pytest.fixture(scope="module")
def fitted(user_env, textures, tmp_path_factory):
    "`anomalyforge fit` on the brick training images at 96 px: (process, checkpoint path)."
    ckpt = tmp_path_factory.mktemp("cli-fit") / "brick.safetensors"
    proc = run(user_env, "fit", "patchknn", "--data", textures, "--category", "brick", "--out", ckpt, "--image-size", 96)
    return proc, ckpt


def test_fit(fitted):
    proc, ckpt = fitted
    ok(proc)
    assert "fitted patchknn on 20 normal images of brick" in proc.stdout, proc.stdout
    assert ckpt.is_file() and ckpt.stat().st_size > 1_000_000
    assert [p.name for p in ckpt.parent.iterdir()] == [ckpt.name], "fit left other files beside the checkpoint"
    from anomalyforge.checkpoint import read_checkpoint
    meta, tensors = read_checkpoint(ckpt)
    assert meta["detector"] == "patchknn" and meta["config"]["image_size"] == 96
    assert tensors["memory_bank"].shape[0] > 0


def test_evaluate(user_env, fitted, textures, tmp_path):
    _, ckpt = fitted
    out = ok(run(user_env, "evaluate", ckpt, "--data", textures, "--category", "brick", "--out", tmp_path / "report")).stdout
    assert "| patchknn | textures/brick/test |" in out, out
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == ["metrics.csv", "metrics.json", "metrics.md", "roc.png"]
    rows = list(csv.DictReader(open(tmp_path / "report" / "metrics.csv")))
    assert len(rows) == 1 and rows[0]["n_test"] == "18", rows
    for k in ("image_auroc", "image_ap", "image_f1_max", "pixel_auroc", "aupro"): assert 0 <= float(rows[0][k]) <= 1, rows[0]
    assert float(rows[0]["image_auroc"]) > 0.7, rows[0]
    assert json.loads((tmp_path / "report" / "metrics.json").read_text())[0]["dataset"] == "textures/brick/test"
    assert (tmp_path / "report" / "roc.png").read_bytes()[:4] == b"\x89PNG"


def test_predict(user_env, fitted, textures, tmp_path):
    _, ckpt = fitted
    test = textures / "brick" / "test"
    folders = [test / "good", *(test / d for d in DEFECTS)]
    proc = ok(run(user_env, "predict", ckpt, *folders, "--out", tmp_path / "scores.csv", "--maps", tmp_path / "maps"))
    assert "18 scores written to" in proc.stdout, proc.stdout
    rows = list(csv.reader(open(tmp_path / "scores.csv")))
    assert rows[0] == ["path", "score", "map"] and len(rows) == 1 + 18, rows[:3]
    scores = {Path(r[0]).relative_to(test).as_posix(): float(r[1]) for r in rows[1:]}
    assert len(scores) == 18
    good = [s for p, s in scores.items() if p.startswith("good/")]
    bad = [s for p, s in scores.items() if not p.startswith("good/")]
    assert len(good) == 6 and len(bad) == 12
    assert np.mean(bad) > np.mean(good), f"defect images score {np.mean(bad):.3f} on average, normal ones {np.mean(good):.3f}"
    maps = sorted(p.name for p in (tmp_path / "maps").iterdir())
    assert maps == sorted(r[2] for r in rows[1:]) and len(maps) == 18
    first = next(r for r in rows[1:] if r[2] == maps[0])
    with Image.open(first[0]) as src, Image.open(tmp_path / "maps" / maps[0]) as im:   # at the file's resolution, not the 96 px scored
        assert src.size == (160, 160) and im.size == src.size and im.mode == "RGB", (src.size, im.size)


def test_predict_prints_csv_without_out(user_env, fitted, textures):
    _, ckpt = fitted
    img = textures / "brick" / "test" / "good" / "000.png"
    rows = list(csv.reader(io.StringIO(ok(run(user_env, "predict", ckpt, img)).stdout)))
    assert rows[0] == ["path", "score"] and len(rows) == 2 and rows[1][0] == str(img)
    assert np.isfinite(float(rows[1][1]))


@pytest.mark.parametrize("name", ["fastflow", "contrastive_flow"])
def test_fit_and_predict_flows(user_env, textures, tmp_path, name):
    "The flows from the shell: settings through --set, a checkpoint that predicts."
    ckpt = tmp_path / f"{name}.safetensors"
    proc = ok(run(user_env, "fit", name, "--data", textures, "--category", "brick", "--out", ckpt, "--image-size", 64,
                  "--set", "epochs=3", "--set", "feature_cache_gb=0.5"))
    assert f"fitted {name} on 20 normal images of brick" in proc.stdout, proc.stdout
    from anomalyforge.checkpoint import read_checkpoint
    meta, _ = read_checkpoint(ckpt)
    assert meta["detector"] == name and meta["config"]["epochs"] == 3 and meta["config"]["feature_cache_gb"] == 0.5
    img = textures / "brick" / "test" / "good" / "000.png"
    rows = list(csv.reader(io.StringIO(ok(run(user_env, "predict", ckpt, img)).stdout)))
    assert rows[0] == ["path", "score"] and 0 <= float(rows[1][1]) <= 1, rows


# -- the demo ----------------------------------------------------------------------------------

def test_demo_quick(demo_run, private_dirs):
    future, out = demo_run
    proc = ok(future.result())
    assert f"tables and figures in {out}" in proc.stdout
    md = (out / "metrics.md").read_text().splitlines()
    assert md[0].startswith("| detector | dataset | image_auroc")
    datasets = [line.split("|")[2].strip() for line in md[2:]]
    assert datasets == ["textures/brick", "surfaces/textile", "digits/digit_0"], md
    figures = sorted(p.name for p in out.glob("*.png"))
    assert figures == ["maps_brick.png", "roc_digits.png", "roc_surfaces.png", "roc_textures.png"]
    for f in figures: assert (out / f).read_bytes()[:4] == b"\x89PNG"
    rows = json.loads((out / "metrics.json").read_text())
    assert rows[0]["image_auroc"] > 0.8, rows[0]
    assert (private_dirs / "data" / "textures").is_dir(), "the demo data did not go to $ANOMALYFORGE_DATA"


# -- bad input: one line on stderr, exit status 2 -----------------------------------------------

@pytest.fixture(scope="module")
def bad_runs(user_env, textures, fitted, tmp_path_factory):
    "Every bad-input command, prepared and started side by side: name -> (Future, the output path it must leave unwritten)."
    tmp = tmp_path_factory.mktemp("cli-bad")
    ckpt = fitted[1]
    OUT = "<out>"                                            # each case writes (or must not write) to its own tmp/<name>
    fit = lambda data, cat, *more, det="patchknn": ("fit", det, "--data", data, "--category", cat, "--out", OUT, *more)
    flat = tmp / "flat"                                      # images, but no CATEGORY/train folders
    shutil.copytree(textures / "brick" / "train" / "good", flat)
    spoilt = tmp / "spoilt"                                  # a training folder with a garbage .png in it
    shutil.copytree(textures / "brick", spoilt / "brick")
    (spoilt / "brick" / "train" / "good" / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    to_score = tmp / "to_score"; to_score.mkdir()           # a folder to score with a truncated JPEG in it
    shutil.copy(textures / "brick" / "test" / "good" / "000.png", to_score / "000.png")
    with Image.open(textures / "brick" / "test" / "good" / "001.png") as im: im.save(tmp / "full.jpg", quality=95)
    jpeg = (tmp / "full.jpg").read_bytes()
    (to_score / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (tmp / "model.safetensors").write_bytes(b"this is not a checkpoint, just some text\n" * 10)
    cases = {
        "missing_dataset": fit(tmp / "nope", "brick"),
        "not_mvtec": fit(flat, "good"),
        "unknown_category": fit(textures, "tile"),
        "unknown_detector": fit(textures, "brick", det="patchnn"),
        "corrupt_training_image": fit(spoilt, "brick"),
        "truncated_jpeg": ("predict", ckpt, to_score, "--out", OUT, "--maps", OUT + "_maps"),
        "not_a_checkpoint": ("predict", tmp / "model.safetensors", textures / "brick" / "test" / "good"),
        "set_key": fit(textures, "brick", "--set", "hidden_ratio=2"),
        "set_value": fit(textures, "brick", "--set", "coreset_ratio=lots"),
        "image_size_zero": fit(textures, "brick", "--image-size", 0),
    }
    return {name: (start(user_env, *(str(a).replace(OUT, str(tmp / name)) for a in argv)), tmp / name) for name, argv in cases.items()}


def bad(bad_runs, name):
    "The stderr line of bad-input case `name`, after checking status 2, one `anomalyforge CMD: error:` line, no traceback."
    future, out = bad_runs[name]
    proc = future.result()
    cmd = proc.args[1]
    assert proc.returncode == 2, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{proc.stderr}"
    assert lines[0].startswith(f"anomalyforge {cmd}: error:"), lines[0]
    assert not out.exists() and not Path(f"{out}_maps").exists(), f"the failed command wrote {out}"
    return lines[0]


def test_bad_missing_dataset(bad_runs):
    err = bad(bad_runs, "missing_dataset")
    assert "does not exist" in err and str(bad_runs["missing_dataset"][1].parent / "nope") in err, err


def test_bad_not_mvtec_layout(bad_runs):
    err = bad(bad_runs, "not_mvtec")
    assert "not in MVTec layout" in err and "flat" in err, err


def test_bad_unknown_category(bad_runs):
    err = bad(bad_runs, "unknown_category")
    assert "no category 'tile'" in err and "brick" in err, err


def test_bad_unknown_detector(bad_runs):
    err = bad(bad_runs, "unknown_detector")
    assert "no detector named 'patchnn'" in err and "did you mean 'patchknn'" in err, err


def test_bad_corrupt_training_image(bad_runs):
    err = bad(bad_runs, "corrupt_training_image")
    assert "zz_broken.png" in err and "unreadable" in err, err


def test_bad_truncated_jpeg_to_predict(bad_runs):
    err = bad(bad_runs, "truncated_jpeg")
    assert "cut.jpg" in err and "truncated" in err, err


def test_bad_checkpoint_file(bad_runs):
    err = bad(bad_runs, "not_a_checkpoint")
    assert "model.safetensors" in err and "not a readable safetensors checkpoint" in err, err


def test_bad_set_key(bad_runs):
    err = bad(bad_runs, "set_key")
    assert "no setting 'hidden_ratio'" in err and "coreset_ratio" in err, err


def test_bad_set_value(bad_runs):
    err = bad(bad_runs, "set_value")
    assert "--set coreset_ratio" in err and "lots" in err, err


def test_bad_image_size(bad_runs):
    err = bad(bad_runs, "image_size_zero")
    assert "image" in err and "0" in err, err


# -- nothing lost: every output is checked before any work, and OS errors are one line ----------

def snapshot(*roots) -> dict:
    "Every file and folder under `roots`: path -> (bytes, or None for a folder; modification time in ns)."
    return {p: (p.read_bytes() if p.is_file() else None, p.stat().st_mtime_ns) for r in roots for p in [Path(r), *Path(r).rglob("*")]}


# Root writes into read-only folders; without the capabilities that override file permissions it meets them as a user does.
UNPRIVILEGED = () if os.geteuid() != 0 else ("setpriv", "--bounding-set", "-dac_override,-dac_read_search") if shutil.which("setpriv") else None
SMALL_FILES = ("prlimit", "--fsize=60000") if shutil.which("prlimit") else None   # writing a file past 60 kB fails: a full disk, in effect


def _safety_cases(textures):
    "name -> (argv of the case folder d, text its one-line error holds, command prefix); d holds model.safetensors, imgs/, notes.txt, afile, adir/, ro/."
    pred = lambda d, *more: ("predict", d / "model.safetensors", d / "imgs", *more)
    fit = lambda out, *more: ("fit", "patchknn", "--data", textures, "--category", "brick", "--out", out, "--image-size", 96, *more)
    return {
        "predict_out_is_the_checkpoint": (lambda d: pred(d, "--out", d / "model.safetensors", "--force"), "is the checkpoint this command reads", ()),
        "predict_out_is_an_input_image": (lambda d: ("predict", d / "model.safetensors", d / "imgs/000.png", "--out", d / "imgs/000.png", "--force"),
                                          "is an input image this command reads", ()),
        "predict_out_in_an_input_folder": (lambda d: pred(d, "--out", d / "imgs/001.png", "--force"), "lies in an input folder", ()),
        "predict_out_is_another_file": (lambda d: pred(d, "--out", d / "notes.txt"), "is not a scores file written by anomalyforge: add --force", ()),
        "predict_out_is_a_folder": (lambda d: pred(d, "--out", d / "adir"), "is a folder: give a file name", ()),
        "predict_out_under_a_file": (lambda d: pred(d, "--out", d / "afile/s.csv"), "afile is a file, not a folder", ()),
        "predict_out_read_only": (lambda d: pred(d, "--out", d / "ro/s.csv"), "/ro is not writable", UNPRIVILEGED),
        "predict_maps_is_the_input_folder": (lambda d: pred(d, "--maps", d / "imgs"), "is an input folder: give the map images a folder of their own", ()),
        "predict_maps_holds_inputs": (lambda d: pred(d, "--maps", d), "holds an input folder", ()),
        "predict_maps_is_a_file": (lambda d: pred(d, "--maps", d / "afile"), "is a file: give a folder", ()),
        "predict_maps_read_only_csv_unwritten": (lambda d: pred(d, "--out", d / "s.csv", "--maps", d / "ro/maps"), "/ro is not writable", UNPRIVILEGED),
        "predict_disk_full": (lambda d: pred(d, "--out", d / "s.csv", "--maps", d / "maps"), "maps: File too large", SMALL_FILES),
        "fit_over_a_training_image": (lambda d: fit(textures / "brick/train/good/000.png", "--force"), "lies in the data folder", ()),
        "fit_over_another_file": (lambda d: fit(d / "notes.txt"), "is not a checkpoint written by anomalyforge: add --force", ()),
        "fit_into_a_folder": (lambda d: fit(d / "adir"), "is a folder: give a file name for the checkpoint", ()),
        "fit_under_a_file": (lambda d: fit(d / "afile/x.safetensors"), "afile is a file, not a folder", ()),
        "fit_read_only": (lambda d: fit(d / "ro/x.safetensors"), "/ro is not writable", UNPRIVILEGED),
        "fit_disk_full": (lambda d: fit(d / "x.safetensors"), "x.safetensors: Error while serializing", SMALL_FILES),
        "train_over_another_file": (lambda d: ("train", "inctrl", "--data", textures, "--out", d / "notes.txt"), "add --force", ()),
        "evaluate_out_is_a_file": (lambda d: ("evaluate", d / "model.safetensors", "--data", textures, "--category", "brick", "--out", d / "afile"),
                                   "is a file: give a folder for the report", ()),
    }
SAFETY_CASES = list(_safety_cases(None))


@pytest.fixture(scope="module")
def safety_runs(user_env, textures, fitted, tmp_path_factory):
    "Every case started side by side, each on a folder of its own: name -> (Future or None where its prefix is missing, folder, expected text, snapshot before)."
    tmp, runs = tmp_path_factory.mktemp("cli-safe"), {}
    for name, (argv, expect, prefix) in _safety_cases(textures).items():
        d = tmp / name; (d / "imgs").mkdir(parents=True)
        for n in ("000.png", "001.png"): shutil.copy(textures / "brick/test/good" / n, d / "imgs" / n)
        shutil.copy(fitted[1], d / "model.safetensors")
        (d / "notes.txt").write_text("my notes\n"); (d / "afile").write_text("a file, not a folder\n"); (d / "adir").mkdir()
        (d / "ro").mkdir(); (d / "ro").chmod(0o555)
        before = snapshot(d, textures)
        runs[name] = (None if prefix is None else start(user_env, *argv(d), prefix=prefix), d, expect, before)
    return runs


@pytest.mark.parametrize("name", SAFETY_CASES)
def test_nothing_lost(safety_runs, textures, name):
    "One line on stderr, status 2, and every file and folder of the case and of the dataset as it was (bytes and times)."
    future, d, expect, before = safety_runs[name]
    if future is None: pytest.skip("needs setpriv (root ignores read-only folders) or prlimit")
    proc = future.result()
    assert proc.returncode == 2, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    err = proc.stderr.strip().splitlines()[-1]
    assert err.startswith(f"anomalyforge {proc.args[proc.args.index(str(CLI)) + 1]}: error:"), err
    assert expect in err, err
    if "disk_full" not in name:   # refused before any work: no progress bar, nothing printed
        assert len(proc.stderr.strip().splitlines()) == 1 and proc.stdout == "", proc.stderr
    after = snapshot(d, textures)
    if "disk_full" in name: before[d] = after[d] = None   # the write was tried there and undone: the folder's time changed, not what it holds
    assert after == before, f"changed: {sorted(str(p) for p in set(before) ^ set(after) | {p for p in before if p in after and before[p] != after[p]})}"


def test_previous_outputs_are_replaced(user_env, fitted, textures, tmp_path):
    "A scores file of an earlier run is replaced without --force, another file with it; only that file changes."
    shutil.copy(fitted[1], tmp_path / "model.safetensors")
    img = textures / "brick/test/good/000.png"
    (tmp_path / "old.csv").write_text("path,score\r\n/elsewhere.png,0.5\r\n"); (tmp_path / "notes.txt").write_text("my notes\n")
    before = snapshot(tmp_path)
    first, forced = start(user_env, "predict", tmp_path / "model.safetensors", img, "--out", tmp_path / "old.csv"), \
                    start(user_env, "predict", tmp_path / "model.safetensors", img, "--out", tmp_path / "notes.txt", "--force")
    ok(first.result()); ok(forced.result())
    for name in ("old.csv", "notes.txt"):
        rows = list(csv.reader(open(tmp_path / name)))
        assert rows[0] == ["path", "score"] and [r[0] for r in rows[1:]] == [str(img)], rows
    after = snapshot(tmp_path)
    assert {p for p in before if before[p] != after.get(p)} == {tmp_path, tmp_path / "old.csv", tmp_path / "notes.txt"}
    assert set(after) == set(before), "a file was added or removed"


def test_evaluate_without_train_split(user_env, fitted, textures, tmp_path):
    "A fitted checkpoint is evaluated on a folder with a test split alone; what the checkpoint does not record shows as '-'."
    for part in ("test", "ground_truth"): shutil.copytree(textures / "brick" / part, tmp_path / "brick" / part)
    out = ok(run(user_env, "evaluate", fitted[1], "--data", tmp_path, "--category", "brick")).stdout
    row = next(l for l in out.splitlines() if l.startswith("| patchknn |"))
    assert row.endswith(" |") and row.split(" | ")[-4:-1] == ["-", "18", "-"], row


# -- memory: predict streams, so peak memory does not grow with the number of images ---------------

MEMORY_SCRIPT = r"""
import resource, sys
from anomalyforge.cli import main
from anomalyforge.core import AnomalyResult, Detector, register_detector

@register_detector
class Flat(Detector):   # a zero-shot stand-in that costs nothing: memory is what predict itself keeps
    name, ready_as_built = "memory-standin", True
    def _predict(self, x): return AnomalyResult(x.mean((1, 2, 3)), x.mean(1))

ckpt, *argv = sys.argv[1:]
Flat(image_size=128).save(ckpt)
code = main(["predict", ckpt, *argv])
print(code, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)   # peak resident memory, MiB
"""


@pytest.fixture(scope="module")
def many_images(tmp_path_factory):
    "3000 small noise images (32 px) in a folder, and their first 500 in another."
    root = tmp_path_factory.mktemp("many")
    (root / "500").mkdir(); (root / "3000").mkdir()
    rng = np.random.default_rng(0)
    for i in range(3000):
        im = Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
        im.save(root / "3000" / f"{i:04d}.png")
        if i < 500: im.save(root / "500" / f"{i:04d}.png")
    return root


@pytest.mark.parametrize("maps", [False, True], ids=["scores", "scores+maps"])
def test_predict_memory_is_flat(many_images, user_env, tmp_path, maps):
    "Scoring 3000 images (maps of 128 x 128, 190 MB of them) peaks no higher than scoring 500, give or take 40 MiB."
    peaks = {}
    for n in (500, 3000):
        more = ["--out", tmp_path / f"{n}.csv"] + (["--maps", tmp_path / f"maps{n}"] if maps else [])
        proc = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, tmp_path / f"{n}.safetensors", many_images / str(n), *more],
                              env=user_env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
        code, peaks[n] = map(int, proc.stdout.split()[-2:])
        assert code == 0
        assert len(list(csv.reader(open(tmp_path / f"{n}.csv")))) == n + 1
        if maps: assert len(list((tmp_path / f"maps{n}").iterdir())) == n
    assert peaks[3000] - peaks[500] < 40, f"peak memory grows with the images scored: {peaks} MiB"


# -- CLIP detectors and InCTRL, on the tiny random OpenCLIP config ----------------------------------

@pytest.fixture(scope="module")
def tiny_clip(private_dirs):
    "The tiny OpenCLIP config, written to the cache every console-script process reads (random weights only)."
    from anomalyforge.backbones import register_tiny_clip
    return ("--set", f"model_name={register_tiny_clip()}", "--set", "weights=random")


def _scores(proc) -> dict[str, float]:
    rows = list(csv.reader(io.StringIO(proc.stdout)))
    assert rows[0][:2] == ["path", "score"], rows[:2]
    return {Path(r[0]).name: float(r[1]) for r in rows[1:]}


def test_train_inctrl_on_synthetic_anomalies_then_predict(user_env, textures, tmp_path, tiny_clip):
    "`train --synthetic` makes anomalies on the normal images (the synthesis library), trains, saves; `predict --prompts` scores new images."
    ckpt = tmp_path / "inctrl.safetensors"
    proc = ok(run(user_env, "train", "inctrl", "--data", textures, "--synthetic", "--out", ckpt, "--image-size", 64, *tiny_clip,
                  "--set", "shots=2", "--set", "steps=20", "--set", "draws=1"))
    assert "trained inctrl on" in proc.stdout and "synthetic" in proc.stdout, proc.stdout
    from anomalyforge.checkpoint import read_checkpoint
    meta, _ = read_checkpoint(ckpt)
    assert meta["detector"] == "inctrl" and meta["config"]["shots"] == 2 and meta["config"]["steps"] == 20
    good = textures / "brick" / "test" / "good"
    scores = _scores(ok(run(user_env, "predict", ckpt, textures / "brick" / "test" / "scratch", "--prompts", good / "000.png", good / "001.png")))
    assert len(scores) == 3 and all(np.isfinite(list(scores.values()))), scores
    proc = run(user_env, "predict", ckpt, good / "002.png", "--prompts", good / "000.png")    # one prompt for a k=2 detector
    assert proc.returncode == 2 and "was set up for k=2 prompts but got 1 normal image(s)" in proc.stderr, proc.stderr
    proc = ok(run(user_env, "evaluate", ckpt, "--data", textures, "--category", "brick"))      # k prompts drawn from the train split
    assert "prompts: 2 normal images drawn" in proc.stdout and "| inctrl | textures/brick/test |" in proc.stdout, proc.stdout


@pytest.mark.parametrize("name", ["clip_zero_shot", "clip_few_shot"])
def test_clip_detectors(user_env, textures, tmp_path, tiny_clip, name):
    "CLIP zero-shot (ready as built) and few-shot (k prompts) from the shell: fit writes a checkpoint that predicts finite scores in [0, 1]."
    ckpt = tmp_path / f"{name}.safetensors"
    proc = ok(run(user_env, "fit", name, "--data", textures, "--category", "brick", "--out", ckpt, "--image-size", 64, *tiny_clip))
    assert ckpt.exists() and f"saved {ckpt}" in proc.stdout, proc.stdout
    scores = _scores(ok(run(user_env, "predict", ckpt, textures / "brick" / "test" / "good")))
    assert len(scores) == 6 and all(0 <= s <= 1 for s in scores.values()), scores
