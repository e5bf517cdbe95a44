"""The path a user takes through the Python API: demo data -> detector from the registry -> fit -> evaluate ->
checkpoint round trip -> figures -> the anomaly-map explorer widget. (`run_demo` runs in test_cli's `demo --quick`.)"""
import matplotlib.pyplot as plt
import pytest
import torch
from matplotlib.figure import Figure

from anomalyforge import create_detector, load_detector
from anomalyforge.core import AnomalyResult
from anomalyforge.data import mvtec_dataset
from anomalyforge.evaluation import METRIC_COLUMNS, evaluate
from anomalyforge.metrics import plot_anomaly_maps, plot_roc
from anomalyforge.detectors.patchknn import PatchKNN

SIZE = 96


@pytest.fixture(scope="module")
def run(textures, tmp_path_factory):
    "Fit PatchKNN on the brick training images, evaluate on the test split, save a checkpoint: (detector, Evaluation, test, path)."
    train, test = mvtec_dataset(textures, "brick", "train", SIZE), mvtec_dataset(textures, "brick", "test", SIZE)
    det = create_detector("patchknn", image_size=SIZE)
    assert isinstance(det, PatchKNN) and det.config.image_size == SIZE
    det.fit(train, progress=False)
    ev = evaluate(det, test, progress=False)
    path = det.save(tmp_path_factory.mktemp("e2e") / "brick.safetensors")
    return det, ev, test, path


@pytest.fixture(scope="module")
def images(run):
    _, _, test, _ = run
    return torch.stack([test[i]["image"] for i in range(len(test))])


def test_result_carries_the_truth(run):
    _, ev, test, _ = run
    r = ev.result
    assert isinstance(r, AnomalyResult) and len(r) == len(test) == 18
    assert r.maps.shape == (18, SIZE, SIZE) and r.masks.shape == (18, SIZE, SIZE)
    assert r.labels.tolist() == [0] * 6 + [1] * 12
    assert r.paths == [str(s.path) for s in test.samples]
    assert not r.masks[:6].any() and all(r.masks[i].any() for i in range(6, 18))   # every defect has its mask


def test_metrics(run):
    _, ev, _, _ = run
    assert set(ev.metrics) == set(METRIC_COLUMNS) == {"image_auroc", "image_ap", "image_f1_max", "pixel_auroc", "aupro"}
    assert all(0 <= v <= 1 for v in ev.metrics.values()), ev.metrics
    assert ev.metrics["image_auroc"] > 0.8, ev.metrics
    assert ev.metrics["pixel_auroc"] > 0.8, ev.metrics
    assert ev.detector == "patchknn" and ev.dataset == "textures/brick/test" and ev.predict_seconds > 0


def test_maps_point_at_the_defects(run):
    "On defect images, pixels inside the true mask score higher on average than pixels outside it."
    _, ev, _, _ = run
    r = ev.result
    inside = torch.stack([r.maps[i][r.masks[i]].mean() for i in range(6, 18)])
    outside = torch.stack([r.maps[i][~r.masks[i]].mean() for i in range(6, 18)])
    assert (inside > outside).float().mean() >= 0.75, (inside, outside)


def test_checkpoint_round_trip(run, images):
    det, ev, test, path = run
    back = load_detector(path)
    assert type(back) is PatchKNN and back.config == det.config
    assert torch.equal(back.memory_bank, det.memory_bank)
    again = back.predict(test)
    torch.testing.assert_close(again.scores, ev.result.scores, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(again.maps, ev.result.maps, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(back.predict(images[:3]).scores, ev.result.scores[:3], rtol=1e-5, atol=1e-6)  # tensors too


def test_plot_anomaly_maps(run, images):
    _, ev, _, _ = run
    fig = plot_anomaly_maps(images, ev.result, n=4)
    try:
        assert isinstance(fig, Figure) and len(fig.axes) == 8                   # image row and overlay row, 4 columns
        titles = [a.get_title() for a in fig.axes if a.get_title()]
        assert len(titles) == 4 and sum("anomalous" in t for t in titles) == 2 and sum("normal" in t for t in titles) == 2, titles
    finally: plt.close(fig)


def test_plot_roc(run):
    _, ev, _, _ = run
    fig = plot_roc(ev.result, label="brick")
    try:
        assert isinstance(fig, Figure)
        legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        assert legend == [f"brick (AUROC {ev.metrics['image_auroc']:.3f})"], legend
    finally: plt.close(fig)


def test_map_explorer(run, images):
    import ipywidgets as widgets
    from anomalyforge.widgets import map_explorer
    _, ev, _, _ = run
    box = map_explorer(images, ev.result, n_images=4, n_thresholds=5, size=96)
    assert isinstance(box, widgets.VBox)
    picker, slider, pages = box.children[:3]
    assert len(picker.options) == 4 and len(slider.options) == 5 and len(pages.children) == 4
    frames = [f for page in pages.children for f in page.children[1].children]
    assert len(frames) == 4 * 5
    assert all(isinstance(f, widgets.HTML) and "data:image/png;base64," in f.value for f in frames)
    names = [label for label, _ in picker.options]
    assert sum("anomalous" in n for n in names) == 2 and sum("normal" in n for n in names) == 2, names
    # a higher threshold marks no more pixels than a lower one, on every image
    shares = [[float(f.value.split("% of pixels")[0].rsplit(">", 1)[1]) for f in page.children[1].children] for page in pages.children]
    assert all(s == sorted(s, reverse=True) for s in shares), shares
