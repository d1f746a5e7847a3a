"""Module 3: training, convergence, checkpoints, resume and fine-tuning."""

import json

import numpy as np
import pytest
import torch
from conftest import two_class_faces

import mimika
from mimika import CropSpec, MimikaError, TrainOptions, create_model, fine_tune
from mimika.prepare.datasets import faces_from_arrays
from mimika.training.loop import Trainer


@pytest.fixture(scope="module")
def two_class_set(astronaut_face):
    faces, codes = two_class_faces(astronaut_face, n=24)
    data = faces_from_arrays(faces[:, None], codes, CropSpec(96, 96), crop="whole")
    data.subjects = np.array([f"S{i % 6:03d}" for i in range(len(data))])
    return data


def quiet(_):
    pass


def test_training_learns_and_validation_uses_no_dropout(two_class_set):
    model = create_model("seed", labels=two_class_set.labels, seed=0)
    train, val = two_class_set.split_by_subject(0.34, seed=0)
    lines = []
    hist = mimika.train(model, train, val, TrainOptions(epochs=6, batch_size=8), log=lines.append)
    assert len(hist) == 6 and len(lines) == 6
    assert "train loss" in lines[0] and "val loss" in lines[0] and "val acc" in lines[0]
    assert hist[-1].train_loss < hist[0].train_loss
    assert hist[-1].val_accuracy >= 0.9
    assert not model.net.training
    p1 = model.predict_proba(val.faces)
    assert np.array_equal(p1, model.predict_proba(val.faces))  # eval mode: deterministic


def test_until_converged_stops_on_small_loss_change(two_class_set):
    model = create_model("seed", labels=two_class_set.labels, seed=0)
    hist = mimika.train(model, two_class_set, options=TrainOptions(epochs=None, tol=10.0, max_epochs=50),
                        log=quiet)
    assert len(hist) == 2  # the second epoch's loss is within 10.0 of the first
    hist = mimika.train(create_model("seed", labels=two_class_set.labels), two_class_set,
                        options=TrainOptions(epochs=None, tol=0.0, max_epochs=3), log=quiet)
    assert len(hist) == 3


def weights(model):
    return {k: v.detach().clone() for k, v in model.net.state_dict().items()}


def one_answer_teacher(path, labels, answer: str):
    """A saved `seed` model that gives `answer` a probability near 1 whatever the face."""
    teacher = create_model("seed", labels=labels, seed=0)
    last = [m for m in teacher.net.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([8.0 if n == answer else 0.0 for n in labels]))
    teacher.save(path)
    return str(path)


@pytest.mark.parametrize("bf16, extra", [(True, {}), (False, dict(augment=True, schedule="cosine",
                                                                  warmup_epochs=1, weight_decay=1e-4,
                                                                  label_smoothing=0.1, keep_best=True,
                                                                  ema=0.9, mixup=0.4)),
                                         (False, dict(augment=True, teacher="TEACHER", teacher_weight=0.5))])
def test_interrupted_and_resumed_run_ends_with_the_same_weights(tmp_path, two_class_set, bf16, extra):
    if extra.get("teacher"):
        extra = dict(extra, teacher=one_answer_teacher(tmp_path / "t.npz", two_class_set.labels, "surprise"))
    opts = dict(batch_size=8, lr=0.01, seed=3, bf16=bf16, **extra)
    val = two_class_set.subset(range(0, 48, 5)) if extra else None
    full = create_model("seed", labels=two_class_set.labels, seed=3)
    mimika.train(full, two_class_set, val, options=TrainOptions(epochs=4, **opts), log=quiet)

    ckpt = tmp_path / "run.ckpt.npz"
    first = create_model("seed", labels=two_class_set.labels, seed=3)

    def killed_after_epoch_2(line):
        if line.startswith("epoch 2"):
            raise KeyboardInterrupt  # the process dies after epoch 2

    with pytest.raises(KeyboardInterrupt):
        mimika.train(first, two_class_set, val, options=TrainOptions(epochs=4, **opts), checkpoint=ckpt,
                     log=killed_after_epoch_2)
    del first
    torch.manual_seed(12345)  # and the new process has other random states
    np.random.seed(12345)
    second = create_model("seed", labels=two_class_set.labels, seed=99)
    hist = mimika.train(second, two_class_set, val, options=TrainOptions(epochs=4, **opts), resume=ckpt,
                        checkpoint=ckpt, log=quiet)
    assert [h.epoch for h in hist] == [1, 2, 3, 4]
    a, b = weights(full), weights(second)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_distillation_learns_the_teachers_answers(tmp_path, two_class_set):
    teacher = one_answer_teacher(tmp_path / "t.npz", two_class_set.labels, "surprise")
    happy = two_class_set.subset(np.flatnonzero(two_class_set.y == two_class_set.labels.index("happiness")))
    surprise = two_class_set.labels.index("surprise")
    p_surprise = {}
    for w in (0.0, 1.0):
        model = create_model("seed", labels=two_class_set.labels, seed=0)
        mimika.train(model, two_class_set, options=TrainOptions(epochs=4, batch_size=8, teacher=teacher,
                                                                teacher_weight=w), log=quiet)
        p_surprise[w] = model.predict_proba(happy.faces)[:, surprise].mean()
    assert p_surprise[0.0] < 0.3  # the labels alone: happy faces are happy
    assert p_surprise[1.0] > 0.9  # the teacher alone: everything is surprise


def test_a_teacher_answers_in_the_students_classes_by_name(tmp_path):
    """A teacher with other classes in another order: its answer is read by class name, and a class
    it never learned (anger) keeps each face's own label share instead of losing it."""
    from mimika.training.loop import load_teachers
    student = create_model("seed", labels=["happiness", "surprise", "anger"])
    path = one_answer_teacher(tmp_path / "t.npz", ["surprise", "fear", "happiness"], "surprise")
    teacher, = load_teachers(TrainOptions(teacher=path), student, "cpu")
    x = student.to_input(np.zeros((2, 96, 96), np.uint8))
    labels = torch.tensor([[0.5, 0.2, 0.3], [0.0, 0.0, 1.0]])
    q = teacher.targets(x, labels)
    assert torch.allclose(q.sum(dim=1), torch.ones(2))
    assert torch.equal(q[:, 2], labels[:, 2])  # anger: the labels' own share
    assert q[0, 1] > 0.69 and q[0, 0] < 0.01  # the other 0.7: nearly all surprise, as the teacher says
    assert torch.equal(q[1], labels[1])  # a face labelled only with anger: nothing to move

    same = one_answer_teacher(tmp_path / "s.npz", student.labels, "surprise")
    teacher, = load_teachers(TrainOptions(teacher=same), student, "cpu")
    expected = torch.softmax(torch.tensor([0.0, 8.0, 0.0]), dim=0)
    assert torch.allclose(teacher.targets(x, labels), expected.expand(2, 3))  # all classes known: its softmax


def test_a_teacher_must_fit_the_student(tmp_path, two_class_set):
    other_labels = one_answer_teacher(tmp_path / "a.npz", ["anger", "happiness", "fear"], "anger")
    smaller = create_model("vgg48", labels=two_class_set.labels)
    smaller.save(tmp_path / "b.npz")
    for path, problem in [(other_labels, "a teacher needs at least two of the student's labels"),
                          (str(tmp_path / "b.npz"), "a teacher needs the student's input .96x96 faces")]:
        with pytest.raises(MimikaError, match=problem):
            mimika.train(create_model("seed", labels=two_class_set.labels), two_class_set,
                         options=TrainOptions(epochs=1, teacher=path), log=quiet)


def test_killed_save_leaves_last_checkpoint_intact(tmp_path, two_class_set, monkeypatch):
    ckpt = tmp_path / "run.ckpt.npz"
    model = create_model("seed", labels=two_class_set.labels, seed=0)
    mimika.train(model, two_class_set, options=TrainOptions(epochs=1, batch_size=16), checkpoint=ckpt, log=quiet)
    before = ckpt.read_bytes()

    def dies(*a, **k):
        raise KeyboardInterrupt  # killed in the middle of writing the next checkpoint

    monkeypatch.setattr(np, "savez", dies)
    with pytest.raises(KeyboardInterrupt):
        mimika.train(model, two_class_set, options=TrainOptions(epochs=2, batch_size=16), resume=ckpt,
                     checkpoint=ckpt, log=quiet)
    assert ckpt.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["run.ckpt.npz"]  # no temp file left


@pytest.mark.parametrize("native", [True, False])
def test_training_defaults_to_bf16_on_a_cpu_that_computes_in_it(monkeypatch, astronaut_face, native):
    monkeypatch.setattr("mimika.training.loop.cpu_has_native_bf16", lambda: native)
    faces, codes = two_class_faces(astronaut_face, n=8)
    data = faces_from_arrays(faces[:, None], codes, CropSpec(48, 48), crop="whole")
    vgg = lambda: create_model("vgg48", labels=data.labels)  # noqa: E731 (not marked train_bf16)
    assert Trainer(vgg(), data, log=quiet).amp == (torch.bfloat16 if native else None)
    assert Trainer(vgg(), data, options=TrainOptions(bf16=False), log=quiet).amp is None
    assert Trainer(vgg(), data, options=TrainOptions(bf16=True), log=quiet).amp == torch.bfloat16


def test_resume_refuses_other_data_or_settings(tmp_path, two_class_set):
    ckpt = tmp_path / "c.npz"
    m = create_model("seed", labels=two_class_set.labels)
    mimika.train(m, two_class_set, options=TrainOptions(epochs=1), checkpoint=ckpt, log=quiet)
    with pytest.raises(MimikaError, match="other training data"):
        Trainer(create_model("seed", labels=two_class_set.labels), two_class_set.subset(np.arange(10)),
                log=quiet).restore(ckpt)
    with pytest.raises(MimikaError, match="other settings"):
        Trainer(create_model("seed", labels=two_class_set.labels), two_class_set,
                options=TrainOptions(lr=0.5), log=quiet).restore(ckpt)
    plain = create_model().save(tmp_path / "plain.npz")
    with pytest.raises(MimikaError, match="not a training checkpoint"):
        Trainer(create_model("seed", labels=two_class_set.labels), two_class_set, log=quiet).restore(plain)


def test_fine_tune_on_rgb_arrays_of_any_size(astronaut_bgr, astronaut_face, tmp_path):
    import cv2
    base = create_model("seed", seed=0)  # 7 CK+ emotions
    rgb = astronaut_bgr[:, :, ::-1]
    upright = np.stack([cv2.resize(rgb, (300, 300))] * 6)            # N x H x W x 3 photos
    faces = np.concatenate([upright, upright[:, ::-1]]).transpose(0, 3, 1, 2)  # N x 3 x H x W
    codes = np.array([5] * 6 + [7] * 6)
    before = weights(base)
    tuned = fine_tune(base, faces, codes, epochs=3, lr=0.01, out=tmp_path / "mine.npz", log=quiet)
    assert tuned.labels == mimika.CKPLUS_EMOTIONS
    after = weights(tuned)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert (tmp_path / "mine.npz").exists()
    with pytest.raises(MimikaError, match="not a CK\\+ emotion code"):
        fine_tune(base, faces, np.array([9] * 12), epochs=1, log=quiet)
    with pytest.raises(MimikaError, match="12 faces but 3 labels"):
        fine_tune(base, faces, np.array([5, 5, 5]), epochs=1, log=quiet)


def test_fine_tune_with_a_new_class_widens_the_head(astronaut_face):
    faces, codes = two_class_faces(astronaut_face, n=4)
    codes[:4] = 0  # neutral is not among the seed model's classes
    model = fine_tune(create_model("seed", seed=0), faces[:, None], codes, epochs=1, crop="whole", log=quiet)
    assert model.labels[0] == "neutral" and model.net.head.out_features == 8


def test_fine_tuning_can_keep_the_starting_models_answers(tmp_path, two_class_set):
    """`keep` is the share of each target the starting model answers: all of it, and the fine-tuned
    model still answers as it did; none, and the faces' labels win."""
    start = one_answer_teacher(tmp_path / "start.npz", two_class_set.labels, "surprise")
    happy = two_class_set.subset(np.flatnonzero(two_class_set.y == two_class_set.labels.index("happiness")))
    surprise = two_class_set.labels.index("surprise")
    p_surprise = {keep: fine_tune(start, happy, epochs=4, lr=0.01, batch_size=8, augment=True, keep=keep,
                                  log=quiet).predict_proba(happy.faces)[:, surprise].mean()
                  for keep in (0.0, 1.0)}
    assert p_surprise[0.0] < 0.3 and p_surprise[1.0] > 0.9
    assert mimika.load_model(start).labels == two_class_set.labels  # the starting file is untouched
    with pytest.raises(MimikaError, match="keep 2: the share of each target"):
        fine_tune(start, happy, epochs=1, keep=2, log=quiet)


def test_keeping_the_starting_model_still_teaches_a_class_it_never_learned(tmp_path, astronaut_face):
    """All of each target from the starting model (keep 1), yet faces of a new class are learned as
    labelled: the old model cannot speak for a class it never knew, so it leaves those faces' labels
    alone; its copy stays as it was."""
    start = one_answer_teacher(tmp_path / "start.npz", ["happiness", "surprise"], "surprise")
    faces, _ = two_class_faces(astronaut_face, n=8)
    data = faces_from_arrays(faces[:, None], ["neutral"] * len(faces), mimika.load_model(start).config.crop, "whole")
    model = fine_tune(start, data, epochs=4, lr=0.01, batch_size=8, keep=1.0, log=quiet)
    assert model.labels == ["neutral", "happiness", "surprise"]
    assert model.predict_proba(data.faces)[:, 0].mean() > 0.9
    assert mimika.load_model(start).labels == ["happiness", "surprise"]


def test_validation_figure_is_the_saved_models(ckplus_tree, tmp_path, capsys):
    """Per-epoch validation scores the weights as they are saved (float16 with --half, the model's
    test-time augmentation): the last epoch's figure, the saved file's and `evaluate`'s agree."""
    import re

    from mimika.cli import main
    out = tmp_path / "m.npz"
    assert main(["train", "--data", str(ckplus_tree), "--val-subjects", "0.5", "--epochs", "2", "--half",
                 "--out", str(out), "--crop", "whole"]) == 0
    text = capsys.readouterr().out
    last = float(re.findall(r"val acc (\d\.\d+)", text)[-1])
    saved = float(re.search(r"validation accuracy of the saved weights (\d\.\d+)", text).group(1))
    assert main(["evaluate", "--model", str(out), "--data", str(ckplus_tree), "--split", "heldout", "--json",
                 "--crop", "whole"]) == 0
    assert last == saved == round(json.loads(capsys.readouterr().out)["accuracy"], 4)


def test_full_disk_while_checkpointing_is_one_line_and_keeps_the_last_checkpoint(ckplus_tree, tmp_path):
    """A full disk (here: a file-size limit, which fails writes as a full disk does) while writing the
    next checkpoint: one line naming the file, the previous checkpoint intact, no temporary file."""
    import subprocess
    import sys
    ckpt, out = tmp_path / "run.ckpt.npz", tmp_path / "m.npz"
    args = ["train", "--data", str(ckplus_tree), "--crop", "whole", "--checkpoint", str(ckpt), "--out", str(out)]
    from mimika.cli import main
    assert main(args + ["--epochs", "1"]) == 0
    before = ckpt.read_bytes()
    limit = ("import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
             f"resource.setrlimit(resource.RLIMIT_FSIZE, ({len(before) // 2}, {len(before) // 2})); "
             "from mimika.cli import main; sys.exit(main(sys.argv[1:]))")
    r = subprocess.run([sys.executable, "-c", limit, *args, "--epochs", "2", "--resume", str(ckpt)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    err = [line for line in r.stderr.splitlines() if line.startswith("mimika: error")]
    assert len(err) == 1 and str(ckpt) in err[0] and "intact" in err[0] and "after epoch 2" in err[0]
    assert r.stderr.strip().splitlines()[-1] == err[0]
    assert ckpt.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_a_killed_writers_temporary_file_is_removed_by_the_next_write(tmp_path):
    import signal
    import subprocess
    import sys
    target = tmp_path / "run.ckpt.npz"
    code = ("import sys, time; from mimika.common.fileio import atomic_path\n"
            "with atomic_path(sys.argv[1]) as tmp:\n"
            "    open(tmp, 'wb').write(b'half a checkpoint'); print(tmp, flush=True); time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", code, str(target)], stdout=subprocess.PIPE, text=True)
    left = child.stdout.readline().strip()
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    from pathlib import Path
    assert Path(left).exists() and not target.exists()  # the kill left its temporary file behind
    from mimika.common.fileio import write_bytes
    write_bytes(target, b"whole")
    assert not Path(left).exists() and [p.name for p in tmp_path.iterdir()] == ["run.ckpt.npz"]


def test_a_calibrated_models_calibration_is_not_inherited_by_what_trains_from_it(astronaut_face, two_class_set):
    """Temperature, class shares and balance were fitted to the old weights; new weights start
    uncalibrated, however they are trained: fine-tuned, or a cross-validation fold started from a
    model with the data's own classes (whose head is kept as it is)."""
    from mimika.training.crossval import cross_validate

    def calibrated(labels=None):
        base = create_model("seed", seed=0, labels=labels)
        base.config.temperature, base.config.class_prior, base.config.balance = 0.5, [0.9, 0.1], 1.0
        base.config.prior = "balanced"
        return base

    faces, codes = two_class_faces(astronaut_face, n=4)
    model = fine_tune(calibrated(), faces[:, None], codes, epochs=1, crop="whole", log=quiet)
    assert model.config.temperature == 1.0 and model.config.prior == "training"
    folds = []

    def make_model(labels):
        folds.append(calibrated(labels))
        return folds[-1]
    cross_validate(two_class_set, make_model, TrainOptions(epochs=1, batch_size=4), k=2, log=quiet)
    assert len(folds) == 2 and folds[0].labels == two_class_set.labels
    assert all((m.config.temperature, m.config.class_prior, m.config.prior) == (1.0, None, "training") for m in folds)


def test_fine_tune_accepts_label_names(astronaut_face):
    faces, codes = two_class_faces(astronaut_face, n=4)
    names = ["happy" if c == 5 else "surprise" for c in codes]
    model = fine_tune(create_model("seed", seed=0), faces[:, None], names, epochs=1, crop="whole", log=quiet)
    assert model.labels == mimika.CKPLUS_EMOTIONS
    with pytest.raises(MimikaError, match="'sleepy' is neither a CK\\+ emotion code"):
        fine_tune(model, faces[:, None], ["sleepy"] * len(codes), epochs=1, crop="whole", log=quiet)


def test_photometric_augmentation_changes_each_faces_contrast_and_reproduces(astronaut_face):
    """Camera changes (--photometric): each face gets its own contrast and brightness, some blur and
    noise; the same seed gives the same batch; off, the batch is what it always was."""
    import cv2

    from mimika.training.augment import augment
    face = cv2.resize(astronaut_face, (48, 48)).astype(np.float32) / 255
    x = torch.from_numpy((face - face.mean()) / face.std()).expand(64, 1, 48, 48).contiguous()
    runs = []
    for photometric in (True, True, False):
        torch.manual_seed(3)
        runs.append(augment(x, erase_p=0, photometric=photometric))
    assert torch.equal(runs[0], runs[1]) and torch.isfinite(runs[0]).all()
    std_on, std_off = runs[0].std(dim=(1, 2, 3)), runs[2].std(dim=(1, 2, 3))
    assert (std_on / std_off).std() > 0.1  # contrasts differ from face to face
    assert (runs[0].mean(dim=(1, 2, 3)) - runs[2].mean(dim=(1, 2, 3))).abs().max() > 0.1  # brightness moved


def test_mixup_blends_each_face_with_another_and_its_target_alike(astronaut_face):
    """mixup: every output face is lambda x its own face + (1 - lambda) x another face of the batch,
    its target the same blend of the two targets; the same seed gives the same batch."""
    import cv2

    from mimika.training.augment import mixup
    face = torch.from_numpy(cv2.resize(astronaut_face, (48, 48)).astype(np.float32) / 255)
    n = 8
    x = torch.stack([face * (k + 1) / n for k in range(n)])[:, None]  # faces told apart by their contrast
    onehot = torch.eye(n)
    torch.manual_seed(5)
    mixed, targets = mixup(x, onehot, alpha=0.4)
    torch.manual_seed(5)
    again, _ = mixup(x, onehot, alpha=0.4)
    assert torch.equal(mixed, again)
    assert torch.allclose(targets.sum(dim=1), torch.ones(n))
    for i in range(n):
        others = [k for k in range(n) if k != i and targets[i, k] > 0]
        j = others[0] if others else i  # paired with itself: the face is unchanged
        lam = float(targets[i, i])
        assert torch.allclose(mixed[i], lam * x[i] + (1 - lam) * x[j], atol=1e-6)
    assert not torch.equal(mixed, x)


def test_mixup_mixes_every_training_batch(two_class_set, monkeypatch):
    import mimika.training.loop as training
    calls = []

    def recorded(x, targets, alpha):
        calls.append((alpha, targets.shape, targets.dtype))
        return x, targets

    monkeypatch.setattr(training, "mixup", recorded)
    mimika.train(create_model("seed", labels=two_class_set.labels), two_class_set,
                 options=TrainOptions(epochs=1, batch_size=8, mixup=0.3), log=quiet)
    assert calls == [(0.3, (8, len(two_class_set.labels)), torch.float32)] * (len(two_class_set) // 8)


def test_photometric_without_augment_is_one_clear_error(two_class_set):
    with pytest.raises(MimikaError, match="--photometric is a kind of augmentation"):
        Trainer(create_model("seed"), two_class_set, options=TrainOptions(epochs=1, photometric=True), log=quiet)


def test_logit_adjustment_raises_the_rare_class(two_class_set):
    """--logit-adjust (balanced loss): the training logits get tau x log(class share); trained on a
    set where one class is rare, the network then gives that class more probability than plain
    cross-entropy does, with the same seed and data."""
    from mimika.training.loop import logit_offset
    rare = two_class_set.y == 1
    keep = np.flatnonzero(~rare | (np.cumsum(rare) <= 3))  # all of one class, 3 of the other
    data = two_class_set.subset(keep)
    common = int((~rare).sum())
    offset = logit_offset(data, TrainOptions(logit_adjust=1.0))
    assert np.allclose(offset.numpy(), np.log([common / (common + 3), 3 / (common + 3)]), atol=1e-6)
    assert logit_offset(data, TrainOptions()) is None
    rare_probability = []
    for tau in (0.0, 1.0):
        model = create_model("seed", labels=data.labels, seed=0)
        mimika.train(model, data, options=TrainOptions(epochs=4, batch_size=5, seed=1, logit_adjust=tau), log=quiet)
        rare_probability.append(model.predict_proba(two_class_set.faces[rare])[:, 1].mean())
    assert rare_probability[1] > rare_probability[0] + 0.15, rare_probability


def test_ema_trains_the_same_steps_and_saves_and_scores_their_moving_average(tmp_path, two_class_set):
    """--ema: training takes the same steps (the checkpoint's own weights are those of a run without
    it), and the run ends with, and validation scores, the average the checkpoint carries."""
    from mimika.common.container import read_container
    from mimika.network.config import MODEL_FORMAT
    from mimika.training.checkpoint import WHAT
    train, val = two_class_set.split_by_subject(0.34, seed=0)
    opts = dict(epochs=3, batch_size=8, lr=0.05, seed=2)
    plain = create_model("seed", labels=train.labels, seed=2)
    mimika.train(plain, train, options=TrainOptions(**opts), log=quiet)
    averaged = create_model("seed", labels=train.labels, seed=2)
    ckpt = tmp_path / "ema.ckpt.npz"
    hist = mimika.train(averaged, train, val, options=TrainOptions(ema=0.9, **opts), checkpoint=ckpt, log=quiet)
    _, arrays = read_container(ckpt, MODEL_FORMAT, WHAT)
    raw, ema = weights(plain), weights(averaged)
    stored = {k[len("ema/module."):]: v for k, v in arrays.items() if k.startswith("ema/module.")}
    assert stored.keys() == ema.keys()
    assert all(np.array_equal(stored[k], ema[k].numpy()) for k in ema)
    assert int(arrays["ema/n_averaged"]) == 3 * int(np.ceil(len(train) / 8))  # one update per step
    assert all(torch.equal(raw[k], v) for k, v in weights(mimika.Model.load(ckpt)).items())  # the steps taken are unchanged
    assert not all(torch.equal(raw[k], ema[k]) for k in raw)  # and the saved weights are their average
    p = averaged.predict_proba(val.faces)
    assert hist[-1].val_accuracy == pytest.approx(float((p.argmax(1) == val.relabel(averaged.labels).y).mean()))


def test_evaluation_can_answer_only_among_the_data_classes():
    """CK+ peaks read as one of their 7 emotions: a face the model calls neutral is scored by its
    best emotion; probabilities renormalized over the data's classes."""
    from mimika.reports.evaluation import among, report
    probs = np.array([[0.6, 0.3, 0.1], [0.5, 0.1, 0.4], [0.1, 0.2, 0.7]])
    y = np.array([1, 2, 2])
    restricted = among(probs, np.unique(y))
    assert np.allclose(restricted.sum(axis=1), 1) and (restricted[:, 0] == 0).all()
    assert report(y, probs.argmax(1), ["neutral", "anger", "sadness"])["accuracy"] == pytest.approx(1 / 3)
    assert report(y, restricted.argmax(1), ["neutral", "anger", "sadness"])["accuracy"] == 1.0


def test_a_widened_head_does_not_depend_on_the_global_random_state():
    """with_labels draws the new head rows from its own seed: two folds of a cross-validation (or two
    fine-tunings in one process) start from the same head whatever ran before them."""
    heads = []
    for state in (1, 2):
        torch.manual_seed(state)
        torch.rand(7)  # whatever ran before
        model = create_model("vgg48", seed=0).with_labels(["happiness", "sadness", "neutral"])
        heads.append(model.net.head.weight.detach().clone())
    assert torch.equal(heads[0], heads[1])
    other = create_model("vgg48", seed=0).with_labels(["happiness", "sadness", "neutral"], seed=1)
    assert not torch.equal(other.net.head.weight, heads[0])
