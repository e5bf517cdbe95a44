"""The Python API on bad input: each case is a clear error of the right anomalyforge.core class, with a message
that names the problem; what can be converted (grayscale, RGBA) is converted; files are written atomically."""
import json, os, re, shutil, signal, struct, subprocess, sys, time, zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

import anomalyforge.backbones as backbones
import anomalyforge.checkpoint as checkpoint
import anomalyforge.core as core
from anomalyforge.core import (AnomalyforgeError, CheckpointError, DataError, Detector, DetectorConfig, NotFittedError,
                               WeightsUnavailableError, create_detector, register_detector)
from anomalyforge import load_detector
from anomalyforge.data import AnomalyDataset, load_image, mvtec_dataset
from anomalyforge.detectors.patchknn import PatchKNN

SIZE = 64


@pytest.fixture(scope="module")
def fitted(textures):
    "PatchKNN (offline EfficientNet-Lite0) fitted on the brick training images at 64 px."
    return create_detector("patchknn", image_size=SIZE).fit(mvtec_dataset(textures, "brick", "train", SIZE), progress=False)


@pytest.fixture(scope="module")
def ckpt(fitted, tmp_path_factory):
    return fitted.save(tmp_path_factory.mktemp("ckpt") / "brick.safetensors")


def _brick_crops(n: int, size: int = 48, seed: int = 0) -> list[np.ndarray]:
    "`n` real grayscale crops (size, size) uint8 of scikit-image's brick photograph."
    src, rng = skimage.data.brick(), np.random.default_rng(seed)
    ys, xs = rng.integers(0, src.shape[0] - size, n), rng.integers(0, src.shape[1] - size, n)
    return [src[y:y + size, x:x + size].copy() for y, x in zip(ys, xs)]


# -- folders and files -------------------------------------------------------------------------

def test_dataset_path_missing(tmp_path):
    with pytest.raises(DataError, match="does not exist") as e: mvtec_dataset(tmp_path / "no_such_dataset", "brick")
    assert "no_such_dataset" in str(e.value)


def test_not_mvtec_layout(textures, tmp_path):
    shutil.copytree(textures / "brick" / "train" / "good", tmp_path / "flat")
    with pytest.raises(DataError, match="not in MVTec layout") as e: mvtec_dataset(tmp_path / "flat", "good")
    assert "CATEGORY/train" in str(e.value)


def test_unknown_category_lists_the_ones_there(textures):
    with pytest.raises(DataError, match="no category 'tile'.*categories: brick"): mvtec_dataset(textures, "tile")


def test_non_image_and_corrupt_files(tmp_path):
    (tmp_path / "notes.png").write_text("a text file with an image's name")
    Image.fromarray(_brick_crops(1)[0]).save(tmp_path / "ok.png")
    raw = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="is not an image file") as e: load_image(tmp_path / "notes.png")
    assert "notes.png" in str(e.value)
    with pytest.raises(DataError, match="corrupt or truncated") as e: load_image(tmp_path / "cut.png")
    assert "cut.png" in str(e.value)
    assert load_image(tmp_path / "ok.png").mode == "RGB"


def test_corrupt_training_image_stops_fit(textures, tmp_path):
    "A garbage .png among the training images: `check()` lists it, and fitting without the check names it too."
    shutil.copytree(textures / "brick", tmp_path / "brick")
    (tmp_path / "brick" / "train" / "good" / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 50)
    (tmp_path / "brick" / "train" / "good" / "README.txt").write_text("not an image extension: ignored")
    train = mvtec_dataset(tmp_path, "brick", "train", SIZE)
    assert len(train) == 21 and train.samples[-1].path.name == "zz_broken.png"
    with pytest.raises(DataError, match=r"1 unreadable file\(s\).*zz_broken.png"): train.check()
    with pytest.raises(DataError, match="zz_broken.png"): create_detector("patchknn", image_size=SIZE).fit(train, progress=False)


def _test_copy_with_mask(textures, tmp_path, change) -> tuple[Path, Path]:
    "A copy of the brick category whose first crack mask is passed through `change(PIL image) -> PIL image`."
    shutil.copytree(textures / "brick", tmp_path / "brick")
    mask = sorted((tmp_path / "brick" / "ground_truth").rglob("*.png"))[0]
    with Image.open(mask) as im: out = change(im.convert("L"))
    out.save(mask)
    return tmp_path, mask


def test_mask_of_another_size_is_an_error_naming_it(fitted, textures, tmp_path):
    "Before: the mask was stretched over its image and the pixel metrics were computed on the wrong pixels."
    root, mask = _test_copy_with_mask(textures, tmp_path, lambda im: im.resize((im.width // 2, im.height // 3), Image.NEAREST))
    test = mvtec_dataset(root, "brick", "test", SIZE)
    with pytest.raises(DataError, match=r"1 mask\(s\) of another size than their image") as e: test.check()
    assert str(mask) in str(e.value) and "80x53 pixels but its image" in str(e.value) and "160x160" in str(e.value)
    with pytest.raises(DataError, match="a mask must have the size of its image") as e: fitted.predict(test)
    assert str(mask) in str(e.value)


def test_noisy_mask_is_read_by_the_half_scale_rule(textures, tmp_path):
    "A 0/255 mask with noise of up to 100 levels everywhere reads as the clean mask: defect where gray > 127."
    rng = np.random.default_rng(0)
    def noisy(im):
        a = np.asarray(im).astype(int)
        n = rng.integers(0, 101, a.shape)
        return Image.fromarray(np.where(a > 127, a - n, a + n).astype(np.uint8))
    clean = mvtec_dataset(textures, "brick", "test", SIZE)
    root, mask = _test_copy_with_mask(textures, tmp_path, noisy)
    test = mvtec_dataset(root, "brick", "test", SIZE)
    i = next(k for k, s in enumerate(test.samples) if s.mask == mask)
    raw = np.asarray(Image.open(mask))
    assert (raw > 0).mean() > 0.95                                  # nearly every pixel non-zero: the old rule saw all defect
    assert torch.equal(test[i]["mask"], clean[i]["mask"]) and 0 < test[i]["mask"].float().mean() < 0.5


def _png_declaring(width: int, height: int) -> bytes:
    "A valid PNG header (signature, IHDR, IEND) that declares a `width` x `height` 8-bit gray image: tiny on disk, huge decoded."
    def chunk(kind, data): return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) + chunk(b"IEND", b"")


def test_decompression_bomb_is_a_data_error_naming_file_and_limit(tmp_path):
    "A 60-byte file declaring 20000 x 20000 pixels: Pillow refuses it at its default limit; we say so in one line."
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_declaring(20000, 20000))
    assert bomb.stat().st_size < 100
    with pytest.raises(DataError) as e: load_image(bomb)
    msg = str(e.value)
    assert f"image {bomb} is too large to open" in msg and f"{2 * Image.MAX_IMAGE_PIXELS} pixels" in msg and "\n" not in msg, msg
    assert "400000000 pixels" in msg
    (tmp_path / "cat" / "train" / "good").mkdir(parents=True)
    shutil.copy(bomb, tmp_path / "cat" / "train" / "good" / "bomb.png")
    with pytest.raises(DataError, match="1 unreadable file.*bomb.png is too large to open"): mvtec_dataset(tmp_path, "cat").check()


@pytest.fixture(scope="module")
def broken_weights(tmp_path_factory):
    "Broken local weights files: truncated, garbage and empty, as .pth and .safetensors."
    d = tmp_path_factory.mktemp("weights")
    sd = {k: v.contiguous() for k, v in backbones.create_timm_model("resnet18", "random").state_dict().items()}
    torch.save(sd, d / "ok.pth"); save_file(sd, str(d / "ok.safetensors"))
    files = []
    for suf in (".pth", ".safetensors"):
        raw = (d / f"ok{suf}").read_bytes()
        for name, data in (("truncated", raw[: len(raw) // 3]), ("garbage", b"not weights " * 50), ("empty", b"")):
            (d / f"{name}{suf}").write_bytes(data); files.append(d / f"{name}{suf}")
    return files


def test_corrupt_local_timm_weights_say_so_in_one_line(broken_weights):
    for f in broken_weights:
        with pytest.raises(CheckpointError) as e: create_detector("patchknn", backbone="resnet18", weights=str(f), image_size=SIZE)
        msg = str(e.value)
        assert msg.startswith(f"weights file {f} is not a readable checkpoint (corrupt, truncated or not a weights file)"), msg
        assert "\n" not in msg and len(msg) < 500, msg


def test_corrupt_local_clip_weights_say_so_in_one_line(broken_weights):
    tiny = backbones.register_tiny_clip()
    for f in broken_weights:
        with pytest.raises(CheckpointError) as e: backbones.create_clip_model(tiny, f)
        msg = str(e.value)
        assert msg.startswith(f"weights file {f} is not a readable checkpoint"), msg
        assert "\n" not in msg and len(msg) < 500, msg


def test_grayscale_and_rgba_images_are_converted(tmp_path):
    "A category whose images are grayscale PNGs and RGBA PNGs: fit and predict work and see 3-channel images."
    crops, cat = _brick_crops(16), tmp_path / "mixed"
    def save(img, rel, mode):
        p = cat / rel; p.parent.mkdir(parents=True, exist_ok=True)
        arr = img if mode == "L" else np.dstack([img, img // 2, 255 - img, np.full_like(img, 90)])  # RGBA, alpha mostly transparent
        Image.fromarray(arr).save(p)
        return p
    modes = ["L", "RGBA"] * 8
    for i in range(12): save(crops[i], f"train/good/{i:03d}.png", modes[i])
    for i in range(12, 14): save(crops[i], f"test/good/{i:03d}.png", modes[i])
    for i in range(14, 16):
        img = crops[i].copy(); img[10:20, 5:40] = 255
        save(img, f"test/crack/{i:03d}.png", modes[i])
        m = np.zeros_like(img); m[10:20, 5:40] = 255
        save(m, f"ground_truth/crack/{i:03d}_mask.png", "L")
    with Image.open(cat / "train/good/000.png") as a, Image.open(cat / "train/good/001.png") as b: assert (a.mode, b.mode) == ("L", "RGBA")

    train, test = mvtec_dataset(tmp_path, "mixed", "train", SIZE), mvtec_dataset(tmp_path, "mixed", "test", SIZE)
    gray, rgba = train[0]["image"], train[1]["image"]
    assert gray.shape == rgba.shape == (3, SIZE, SIZE)
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])      # gray repeated into RGB
    assert not torch.equal(rgba[0], rgba[2])                                      # RGBA keeps its colours, drops alpha
    det = create_detector("patchknn", image_size=SIZE).fit(train, progress=False)
    res = det.predict(test)
    assert res.maps.shape == (4, SIZE, SIZE) and torch.isfinite(res.scores).all() and torch.isfinite(res.maps).all()
    assert res.labels.tolist() == [0, 0, 1, 1] and res.masks[2:].any()
    # tensors too: a 1-channel and a 4-channel batch are accepted as they are
    x = torch.stack([test[i]["image"] for i in range(4)])
    assert torch.allclose(det.predict(x[:, :1]).scores, det.predict(x[:, :1].expand(-1, 3, -1, -1)).scores)
    assert torch.allclose(det.predict(torch.cat([x, torch.rand(4, 1, SIZE, SIZE)], 1)).scores, res.scores, atol=1e-5)


def test_image_smaller_than_the_backbone_needs(fitted):
    with pytest.raises(DataError, match=r"12x12 are smaller than efficientnet_lite0 layer 3 needs \(at least 16x16\)") as e:
        fitted.predict(torch.rand(1, 3, 12, 12))
    assert "use larger images" in str(e.value)


def test_empty_training_set(tmp_path):
    (tmp_path / "empty" / "train" / "good").mkdir(parents=True)
    (tmp_path / "empty" / "test" / "good").mkdir(parents=True)
    with pytest.raises(DataError, match="training set is empty") as e: mvtec_dataset(tmp_path, "empty", "train")
    assert "train/good" in str(e.value)
    with pytest.raises(DataError, match="empty"): create_detector("patchknn", image_size=SIZE).fit(AnomalyDataset([]), progress=False)


def test_fit_on_test_split_is_refused(textures):
    det = create_detector("patchknn", image_size=SIZE)
    with pytest.raises(DataError, match="12 of the 18 training images are labelled anomalous: pass the train split"):
        det.fit(mvtec_dataset(textures, "brick", "test", SIZE), progress=False)
    assert not bool(det.fitted)


@pytest.mark.parametrize("size", [0, -5])
def test_config_refuses_nonpositive_image_size(size):
    with pytest.raises(ValueError, match="image_size"): create_detector("patchknn", image_size=size)


@pytest.mark.parametrize("sigma, says", [(float("inf"), "blur_sigma must be a finite number"), (float("nan"), "blur_sigma must be a finite number"),
                                          (1e5, "blur_sigma=100000 is too large for image_size=64")])
def test_blur_sigma_that_would_break_predict_is_refused_at_once(sigma, says, monkeypatch):
    "Before: fit worked, then predict crashed or asked for terabytes. Now the config refuses it, before the backbone loads."
    monkeypatch.setattr(backbones, "create_timm_model", lambda *a, **k: pytest.fail("the backbone was built"))
    with pytest.raises(ValueError, match=says): create_detector("patchknn", image_size=SIZE, blur_sigma=sigma)


def test_every_float_setting_of_every_detector_must_be_finite():
    "The check lives in DetectorConfig, so each detector's config has it for every float field, present and future."
    from dataclasses import fields
    from anomalyforge.core import get_detector_class, list_detectors
    checked = []
    for name in list_detectors():
        cfg_cls = get_detector_class(name).config_class
        for f in fields(cfg_cls):
            if isinstance(getattr(cfg_cls(), f.name), float):
                for bad in (float("inf"), float("-inf"), float("nan")):
                    with pytest.raises(ValueError, match=f"{f.name} must be a finite number"): cfg_cls(**{f.name: bad})
                checked.append(f"{name}.{f.name}")
    assert len(checked) >= 10 and "patchknn.blur_sigma" in checked, checked


def test_config_refuses_empty_layers():
    with pytest.raises(ValueError, match="layers"): create_detector("patchknn", layers=())


def test_predict_before_fit():
    with pytest.raises(NotFittedError, match="not fitted: call fit\\(\\) or load\\(\\) first"):
        PatchKNN(image_size=SIZE).predict(torch.rand(1, 3, SIZE, SIZE))


# -- checkpoints -------------------------------------------------------------------------------

@dataclass
class _TinyConfig(DetectorConfig):
    image_size: int = 16


class _TinyDetector(Detector):
    "A throwaway detector: the mean training image, distance to it as the map."
    name, config_class, dynamic_buffers = "tiny-throwaway", _TinyConfig, ("mean",)
    def __init__(self, config=None, **kw):
        super().__init__(config, **kw)
        self.register_buffer("mean", torch.zeros(0))
    def _fit(self, batches, progress): self.mean = torch.cat([b["image"] for b in batches]).mean(0)
    def _predict(self, x):
        maps = (x - self.mean).abs().mean(1)
        return core.AnomalyResult(maps.flatten(1).amax(1), maps)


@pytest.fixture
def tiny_registered():
    register_detector(_TinyDetector)
    yield _TinyDetector
    core.DETECTORS.pop(_TinyDetector.name, None)


def test_checkpoint_of_another_detector(tiny_registered, tmp_path):
    path = tiny_registered(device="cpu").fit(torch.rand(4, 3, 16, 16), progress=False).save(tmp_path / "tiny.safetensors")
    assert type(load_detector(path)) is _TinyDetector                      # a good checkpoint of its own kind
    with pytest.raises(CheckpointError, match="holds a 'tiny-throwaway' detector, not 'patchknn'") as e: PatchKNN.load(path)
    assert "tiny.safetensors" in str(e.value)


def test_checkpoint_of_another_config(ckpt):
    det = create_detector("patchknn", image_size=SIZE, layers=(1, 2))
    with pytest.raises(CheckpointError, match=r"another config \(layers: checkpoint \(2, 3\) vs detector \(1, 2\)\)"):
        det.load_weights(ckpt)
    assert not bool(det.fitted)


def test_truncated_checkpoint(ckpt, tmp_path):
    data = ckpt.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable safetensors checkpoint") as e: load_detector(cut)
    assert "cut.safetensors" in str(e.value)
    with pytest.raises(CheckpointError, match="does not exist"): load_detector(tmp_path / "gone.safetensors")


def _tensor_at(path: Path, name: str) -> int:
    "Byte offset in the safetensors file `path` where tensor `name`'s data starts."
    raw = path.read_bytes(); n = int.from_bytes(raw[:8], "little")
    return 8 + n + json.loads(raw[8:8 + n])[name]["data_offsets"][0]


def test_corrupt_tensor_data_is_refused(ckpt, tmp_path):
    "Bytes flipped inside the memory bank: safetensors alone loads the file (and the detector would score NaN); we refuse it."
    raw = bytearray(ckpt.read_bytes())
    at = _tensor_at(ckpt, "memory_bank") + 4000
    raw[at:at + 16] = bytes(b ^ 0xFF for b in raw[at:at + 16])
    bad = tmp_path / "flipped.safetensors"
    bad.write_bytes(raw)
    assert not torch.equal(load_file(str(bad))["memory_bank"], load_file(str(ckpt))["memory_bank"])   # it would load
    with pytest.raises(CheckpointError, match="flipped.safetensors is corrupt: its bytes do not match the sha256 checksum") as e:
        load_detector(bad)
    assert "\n" not in str(e.value)
    with pytest.raises(CheckpointError, match="is corrupt"): create_detector("patchknn", image_size=SIZE).load_weights(bad)
    assert ckpt.read_bytes() != bytes(raw) and load_detector(ckpt) is not None               # the intact file is untouched


def test_checkpoint_without_checksum_still_loads(fitted, ckpt, tmp_path):
    "A file written before checkpoints were sealed (no sha256 in its metadata) loads and predicts as before."
    meta, tensors = checkpoint.read_checkpoint(ckpt)
    old = {k: (json.dumps(v) if k in ("config", "external") else v) for k, v in meta.items() if k != "sha256"}
    save_file(tensors, str(tmp_path / "old.safetensors"), metadata=old)
    x = torch.rand(2, 3, SIZE, SIZE)
    assert torch.allclose(load_detector(tmp_path / "old.safetensors").predict(x).scores, fitted.predict(x).scores, atol=1e-6)


def test_checkpoint_round_trip_still_works(fitted, ckpt):
    "The control for the cases above: the same file, whole, loads and predicts as the fitted detector."
    x = torch.rand(2, 3, SIZE, SIZE)
    assert torch.allclose(load_detector(ckpt).predict(x).scores, fitted.predict(x).scores, atol=1e-6)


def test_two_identical_fits_write_identical_bytes(textures, ckpt, tmp_path):
    "Fitting the same detector on the same data with the same seed gives the same file, byte for byte (header key order included)."
    again = create_detector("patchknn", image_size=SIZE).fit(mvtec_dataset(textures, "brick", "train", SIZE), progress=False)
    assert again.save(tmp_path / "again.safetensors").read_bytes() == ckpt.read_bytes()


def test_failed_save_keeps_the_previous_checkpoint(fitted, tmp_path, monkeypatch):
    path = fitted.save(tmp_path / "model.safetensors")
    good = path.read_bytes()
    written = []
    def write_half_then_fail(tensors, filename, metadata=None):
        Path(filename).write_bytes(good[: len(good) // 2])
        written.append(Path(filename))
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(checkpoint, "save_file", write_half_then_fail)
    with pytest.raises(OSError, match="No space left"): fitted.save(path)
    with pytest.raises(OSError, match="No space left"): fitted.save(tmp_path / "new.safetensors")
    monkeypatch.undo()
    assert len(written) == 2 and written[0].parent == tmp_path and written[0] != path   # it did write, elsewhere
    assert path.read_bytes() == good, "the previous checkpoint was damaged by a failed save"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"], "a failed save left files behind"
    x = torch.rand(1, 3, SIZE, SIZE)
    assert torch.allclose(load_detector(path).predict(x).scores, fitted.predict(x).scores, atol=1e-6)


def test_save_after_a_killed_save_removes_its_temporary_file(fitted, tmp_path):
    "kill -9 inside atomic_write leaves .NAME.XXXXXXXX.tmp; the next save of that file removes it once stale, and nothing else."
    path = tmp_path / "model.safetensors"
    fitted.save(path)
    good = path.read_bytes()
    killer = ("import os, signal, sys\nfrom anomalyforge.core import atomic_write\n"
              "with atomic_write(sys.argv[1]) as tmp:\n    tmp.write_bytes(b'half a checkpoint'); os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.run([sys.executable, "-c", killer, str(path)], capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    left = [p for p in tmp_path.iterdir() if p != path]
    assert len(left) == 1 and left[0].name.startswith(".model.safetensors.") and left[0].suffix == ".tmp", left
    assert path.read_bytes() == good                                  # the kill lost nothing
    keep = [tmp_path / ".other.safetensors.abcd1234.tmp", tmp_path / "notes.tmp"]
    for p in keep: p.write_text("not ours")
    fitted.save(path)
    assert left[0].exists()                                           # young: could still be a live writer's
    old = time.time() - 2 * core.STALE_TEMP_AGE_S
    for p in (left[0], *keep): os.utime(p, (old, old))
    fitted.save(path)
    assert not left[0].exists() and all(p.exists() for p in keep)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name] + [p.name for p in keep])
    assert path.read_bytes() == good


# -- pretrained weights offline ----------------------------------------------------------------

@pytest.fixture
def offline(monkeypatch, tmp_path):
    "As on a machine without internet and without a Hugging Face cache."
    monkeypatch.setattr(backbones, "hub_reachable", lambda timeout=2.0: False)
    import huggingface_hub.constants
    (tmp_path / "empty-hf-cache").mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    monkeypatch.delenv("ANOMALYFORGE_WEIGHTS", raising=False)


def _how_to_supply(msg: str, name: str) -> list[str]:
    "The ways to supply weights that `msg` fails to mention."
    ways = [f"weights='/path/to/{name}.safetensors'", "$ANOMALYFORGE_WEIGHTS", "HF_HOME=", "weights='random'"]
    return [w for w in ways if w not in msg]


@pytest.mark.parametrize("build, what, name", [
    (lambda: backbones.create_timm_model("resnet18", weights="pretrained"), "timm model 'resnet18'", "resnet18"),
    (lambda: backbones.ClipBackbone("ViT-B-16", weights="openai"), "OpenCLIP ViT-B-16 (openai)", "ViT-B-16_openai"),
], ids=["timm", "open_clip"])
def test_weights_unavailable_offline(offline, record_property, build, what, name):
    t0 = time.perf_counter()
    with pytest.raises(WeightsUnavailableError) as e: build()
    took = time.perf_counter() - t0
    record_property("seconds_to_fail", round(took, 2))
    msg = str(e.value)
    assert what in msg and "are not on this machine" in msg, f"after {took:.1f} s: {msg}"
    assert not _how_to_supply(msg, name), f"after {took:.1f} s, the message lacks {_how_to_supply(msg, name)}: {msg}"


def test_offline_clip_message_advice_works(offline, monkeypatch, tmp_path):
    "Follow the offline CLIP message word for word: the file it names, in the folder it names, makes the same detector build."
    import open_clip.pretrained as ocp
    tiny = backbones.register_tiny_clip()
    monkeypatch.setitem(ocp._PRETRAINED, tiny, {"demo": ocp._pcfg(hf_hub="anomalyforge/no-such-clip/")})   # a tag the hub lacks
    with pytest.raises(WeightsUnavailableError) as e: create_detector("clip_zero_shot", model_name=tiny, weights="demo")
    msg = str(e.value)
    assert "ANOMALYFORGE_WEIGHTS" in msg and "\n" not in msg
    advised = re.search(r"\$ANOMALYFORGE_WEIGHTS as (\S+\.safetensors)", msg).group(1)
    assert advised == f"{tiny}_demo.safetensors"
    source = backbones.create_clip_model(tiny, "random")
    (tmp_path / "weights").mkdir()
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(tmp_path / "weights" / advised))
    monkeypatch.setenv("ANOMALYFORGE_WEIGHTS", str(tmp_path / "weights"))
    det = create_detector("clip_zero_shot", model_name=tiny, weights="demo")
    got = det.backbone.model.state_dict()
    assert all(torch.equal(got[k], v) for k, v in source.state_dict().items())
    monkeypatch.delenv("ANOMALYFORGE_WEIGHTS")
    path = re.search(r"weights='(/path/to/\S+\.safetensors)'", msg).group(1)           # the other route: the file as `weights`
    assert path == f"/path/to/{advised}"
    det = create_detector("clip_zero_shot", model_name=tiny, weights=str(tmp_path / "weights" / advised))
    assert bool(det.fitted)


def test_every_error_is_an_anomalyforge_error():
    "Callers can catch one class; each also is the built-in kind a caller would expect."
    for cls, builtin in ((DataError, ValueError), (CheckpointError, ValueError), (WeightsUnavailableError, RuntimeError),
                         (NotFittedError, RuntimeError)):
        assert issubclass(cls, AnomalyforgeError) and issubclass(cls, builtin), cls


# -- synthetic validation and diffusion --------------------------------------------------------

def test_select_with_an_unreachable_diffusion_model_says_how_to_supply_it(textures, tmp_path, capsys):
    "A diffusion model that is neither a local folder nor in the hub cache: one line naming the ways to supply it, in seconds, nothing written."
    from anomalyforge.cli import main
    t0 = time.time()
    code = main(["select", "--data", str(textures), "--category", "brick", "--candidates", "patchknn", "--generator", "diffstyle",
                 "--diffusion-model", "nobody/no-such-ddpm", "--image-size", "64", "--max-support", "6", "--out", str(tmp_path / "sel")])
    err = capsys.readouterr().err
    assert code == 2 and "save_pretrained" in err and "model='train'" in err, err
    assert time.time() - t0 < 60
    assert not (tmp_path / "sel").exists() or not any((tmp_path / "sel").iterdir())


def test_select_reports_a_candidate_that_fails_and_ranks_the_rest(textures):
    "A candidate whose settings do not fit the images is a row with its error, ranked last; the others are scored."
    from anomalyforge.selection import select
    support = torch.stack([mvtec_dataset(textures, "brick", "train", SIZE)[i]["image"] for i in range(8)])
    sel = select(["patchknn", "patchknn:blur_sigma=50"], support, "cutpaste", progress=False)
    assert [r["candidate"].label for r in sel.rows] == ["patchknn", "patchknn:blur_sigma=50.0"]
    assert 0 <= sel.rows[0]["synthetic_auroc"] <= 1 and "blur_sigma=50 is too large" in sel.rows[1]["error"]


def test_diffusion_model_folder_that_is_not_a_model(tmp_path):
    from anomalyforge.diffusion import load_diffusion
    (tmp_path / "m").mkdir(); (tmp_path / "m" / "model_index.json").write_text("{broken")
    with pytest.raises(CheckpointError, match="cannot be loaded"): load_diffusion(tmp_path / "m")
    with pytest.raises(DataError, match="does not exist"): load_diffusion(tmp_path / "nothing-here")
