"""Data-parallel training and prediction under `torchrun`: two CPU processes (gloo) against one process, on tiny models.

FastFlow and InCTRL's pretraining draw nothing random inside a step, so two processes must end where one ends; the
contrastive flow and LTAD draw synthetic data per item, so there the check is that the processes agree with each other
(the gradients really are averaged) and that prediction returns every image, in order, on every process."""
import os, subprocess, sys, textwrap

import pytest
import torch

WORKER = textwrap.dedent('''
    import sys, torch
    from torch.utils.data import Dataset
    from anomalyforge.distributed import init_distributed, close_distributed, gather, is_main, world_size
    from anomalyforge.core import create_detector
    from anomalyforge.auxiliary import AuxiliarySet, AuxiliaryTask
    from anomalyforge.backbones import register_tiny_clip

    init_distributed()
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(21, 3, 64, 64, generator=g) * 0.3 + 0.35)
    test = torch.cat([x[:4], torch.rand(5, 3, 64, 64, generator=g)])          # 9 images: uneven slices over 2 processes

    class Labelled(Dataset):
        def __len__(self): return len(test)
        def __getitem__(self, i): return {"image": test[i], "label": int(i >= 4)}

    def flat(module_params): return torch.cat([p.detach().flatten() for p in module_params])
    out = {"world": world_size()}

    ff = create_detector("fastflow", image_size=64, weights="random", epochs=3, val_fraction=0.25, batch_size=6, patience=10)
    ff.fit(x, progress=False)
    out["fastflow"] = gather(flat(ff.flows.parameters()))
    out["fastflow_history"] = [(h["train_loss"], h["val_loss"]) for h in ff.history]
    r = ff.predict(test)
    out["predict"] = gather((r.scores, r.maps))
    out["alone"] = ff._predict_all(test, False).scores          # this process scoring everything itself
    rd = ff.predict(Labelled())
    out["predict_dataset"] = (rd.scores, rd.labels)

    cf = create_detector("contrastive_flow", image_size=64, weights="random", epochs=2, val_fraction=0, batch_size=6,
                         proxies=("cutpaste",), synthetic_per_image=2)
    cf.fit(x, progress=False)
    out["contrastive_flow"] = gather(flat(cf.trainable_parameters()))

    tiny = register_tiny_clip()
    def toy(n, anomalous, seed, colour):
        gg = torch.Generator().manual_seed(seed)
        t = torch.tensor(colour).view(1, 3, 1, 1) + torch.randn(n, 3, 64, 64, generator=gg) * 0.02
        if anomalous: t[:, :, 16:40, 16:40] = torch.rand(n, 3, 24, 24, generator=gg)
        return t.clamp(0, 1)
    aux = AuxiliarySet([AuxiliaryTask(f"toy{t}", toy(6, False, t, c), toy(6, True, 10 + t, c))
                        for t, c in enumerate([(0.3, 0.5, 0.7), (0.7, 0.3, 0.3)])], "synthetic", "toy squares")
    inctrl = dict(model_name=tiny, weights="random", image_size=64, shots=2, draws=1, steps=12, batch_size=8)
    ic = create_detector("inctrl", heads="plain", **inctrl).pretrain(aux, progress=False)
    out["inctrl"] = gather(flat(p for p in ic.parameters() if p.requires_grad))
    bn = create_detector("inctrl", **inctrl).pretrain(aux, progress=False)          # the default heads have BatchNorm
    out["inctrl_batchnorm"] = gather(flat(t for t in bn.state_dict().values() if t.is_floating_point()))

    lt = create_detector("ltad", clip_model=tiny, clip_weights="random", image_size=64, dim=32, blocks=1, heads=4, latent=8,
                         phase1_epochs=2, phase2_epochs=2, batch_size=8)
    classes = torch.tensor([0] * 12 + [1] * 6 + [2] * 3)
    lt.fit(x, classes=classes, progress=False)
    out["ltad"] = gather(flat(p for p in lt.parameters() if p.requires_grad))
    cls = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2])
    out["ltad_predict"] = gather(lt.predict(test, classes=cls).scores)
    out["ltad_alone"] = torch.cat([lt.predict(test[i:i + 1], classes=cls[i:i + 1]).scores for i in range(9)])   # one image: not split
    if is_main(): torch.save(out, sys.argv[1])
    close_distributed()
''')


def _run(tmp_path, user_env, nproc: int) -> dict:
    script, result = tmp_path / "worker.py", tmp_path / f"out{nproc}.pt"
    script.write_text(WORKER)
    env = {**user_env, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", str(script), str(result)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert res.returncode == 0, res.stderr[-4000:]
    return torch.load(result, weights_only=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, user_env):
    tmp = tmp_path_factory.mktemp("ddp")
    return _run(tmp, user_env, 1), _run(tmp, user_env, 2)


def test_processes_agree(runs):
    "With gradients averaged every step (and InCTRL's BatchNorm statistics at the end), both processes hold the same model after training, for every method."
    _, two = runs
    assert two["world"] == 2
    for name in ("fastflow", "contrastive_flow", "inctrl", "inctrl_batchnorm", "ltad"):
        a, b = two[name]
        assert torch.equal(a, b), name


def test_two_processes_train_as_one(runs):
    "FastFlow and InCTRL (without BatchNorm in its heads) draw nothing random inside a step: two processes end where one ends (up to float summation order)."
    one, two = runs
    for name in ("fastflow", "inctrl"):
        torch.testing.assert_close(two[name][0], one[name][0], rtol=1e-3, atol=1e-4, msg=name)
    for (t1, v1), (t2, v2) in zip(one["fastflow_history"], two["fastflow_history"]):
        assert abs(t1 - t2) < 1e-3 and abs(v1 - v2) < 1e-3


def test_predict_gathers_every_image_in_order(runs):
    "Each process scores a slice; every process returns all 9 scores and maps, in input order, as if it had scored them alone."
    _, two = runs
    for scores, maps in two["predict"]:
        assert scores.shape == (9,) and maps.shape == (9, 64, 64)
        torch.testing.assert_close(scores, two["alone"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(two["predict"][0][0], two["predict"][1][0], rtol=0, atol=0)
    scores, labels = two["predict_dataset"]
    assert labels.tolist() == [0] * 4 + [1] * 5                # a Dataset's labels come back in order with the scores
    torch.testing.assert_close(scores, two["alone"], rtol=1e-5, atol=1e-6)
    for scores in two["ltad_predict"]:                         # LTAD's per-image classes follow each process's slice
        torch.testing.assert_close(scores, two["ltad_alone"], rtol=1e-5, atol=1e-6)


def _cli(args: list[str], env: dict, nproc: int) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m", "anomalyforge.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, env={**env, "OMP_NUM_THREADS": "1"})


def test_command_line_under_torchrun(textures, user_env, tmp_path):
    "`torchrun -m anomalyforge.cli fit` and `predict` in two processes: one checkpoint, one scores file, the scores of a single process."
    fit = ["fit", "fastflow", "--data", str(textures), "--category", "brick", "--image-size", "64", "--set", "epochs=2", "--set", "weights=random"]
    scores = {}
    for n in (1, 2):
        model, out = tmp_path / f"model{n}.safetensors", tmp_path / f"scores{n}.csv"
        res = _cli([*fit, "--out", str(model)], user_env, n)
        assert res.returncode == 0, res.stderr[-3000:]
        assert res.stdout.count("saved") == 1 and model.exists()          # rank 0 alone writes and reports
        folders = sorted(str(d) for d in (textures / "brick" / "test").iterdir() if d.is_dir())
        res = _cli(["predict", str(model), *folders, "--out", str(out)], user_env, n)
        assert res.returncode == 0, res.stderr[-3000:]
        assert res.stdout.count("scores written") == 1
        rows = out.read_text().splitlines()
        assert rows[0] == "path,score" and len(rows) == 19
        scores[n] = {r.split(",")[0]: float(r.split(",")[1]) for r in rows[1:]}
    assert scores[1].keys() == scores[2].keys()
    for p, s in scores[1].items(): assert abs(s - scores[2][p]) <= 1e-3 * max(1.0, abs(s)), (p, s, scores[2][p])
    assert not list(tmp_path.glob("*.tmp*"))                                 # no temporary file left behind


def test_single_process_commands_refuse_torchrun(user_env, tmp_path):
    res = _cli(["demo", "--quick", "--out", str(tmp_path / "demo")], user_env, 2)
    assert res.returncode != 0 and "runs in one process: start it without torchrun" in res.stderr
