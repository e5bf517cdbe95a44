"""The installed `anomalyforge` console script, run the way a user runs it: a separate process, its output and files."""
import csv, io, json, shutil, subprocess, sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CLI = Path(sys.executable).parent / "anomalyforge"
SUBCOMMANDS = {  # subcommand -> options its --help must mention
    "list": [],
    "fit": ["--data", "--category", "--out", "--image-size", "--set", "detector"],
    "predict": ["--out", "--maps", "checkpoint", "images"],
    "evaluate": ["--data", "--category", "--out", "checkpoint"],
    "demo": ["--out", "--detector", "--quick", "--set"],
}
DEFECTS = ("foreign", "hole", "scratch", "stain")


def run(env, *argv, timeout=300) -> subprocess.CompletedProcess:
    assert CLI.exists(), f"{CLI} is missing: pip install -e . installs the console script"
    return subprocess.run([str(CLI), *map(str, argv)], env=env, capture_output=True, text=True, timeout=timeout)


# Each command spends seconds importing torch and timm: independent commands run a few at a time, and the
# minute-long demo is started first and checked last, so the other commands run beside it.
_POOL = ThreadPoolExecutor(max_workers=3)

def start(env, *argv, timeout=300):
    "`run` in the background: a Future of the finished process."
    return _POOL.submit(run, env, *argv, timeout=timeout)


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
    with Image.open(tmp_path / "maps" / maps[0]) as im: assert im.size == (96, 96) and im.mode == "RGB"


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
