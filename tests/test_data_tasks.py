"""Tasks from a user's own data: arrays, image folders, CSV tables, text files and Python tensors.

Every file here is real and written in the test's folder: scikit-learn's digits and wine, Pillow PNGs,
JSON Lines text. Each task must load, batch deterministically, fingerprint its content (not its path)
and refuse bad input with one line naming the option.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import optuna
import pytest
import torch

from automl import SearchSpace, SpaceError, get_registry
from automl.cli import main
from automl_plugins.tasks import as_task, examples, from_data, with_task


def configure(name: str, **raw):
    return get_registry().get("tasks", name).configure(raw, key="task")


def refused(name: str, match: str, **raw) -> SpaceError:
    """The one-line error a task table gets; ``match`` must be in it."""
    with pytest.raises(SpaceError) as caught:
        configure(name, **raw)
    text = str(caught.value)
    assert "\n" not in text and match in text, text
    return caught.value


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    data = load_digits()
    keep = np.arange(0, 1797, 6)  # 300 images, every class
    return (data.images[keep] * 16).astype(np.uint8), data.target[keep]


@pytest.fixture
def npz(tmp_path, digits):
    x, y = digits
    path = tmp_path / "digits.npz"
    np.savez(path, x=x, y=y, x_val=x[:40], y_val=y[:40])
    return path


@pytest.fixture
def png_folder(tmp_path):
    return examples.digits_png(tmp_path / "png", per_class=6)


@pytest.fixture
def wine(tmp_path):
    return examples.wine_csv(tmp_path / "wine.csv")


@pytest.fixture
def texts(tmp_path):
    path = tmp_path / "texts.jsonl"
    rows = [{"text": f"the cat sat on mat number {i}", "label": "cats"} for i in range(20)]
    rows += [{"text": f"a dog ran in the park, twice {i}", "label": "dogs"} for i in range(20)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# -- arrays ----------------------------------------------------------------------------------------
def test_arrays_from_npz_draws_stratified_splits_and_standardises(npz, digits):
    task = configure("arrays", path=str(npz), batch_size=16)
    assert task.kind == "image-classification" and task.input_shape == (1, 8, 8) and task.num_classes == 10
    assert task.split_sizes() == {"train": 240, "val": 60}
    assert task.classes == tuple(str(i) for i in range(10))
    val_labels = task.split("val").targets
    assert torch.bincount(val_labels, minlength=10).min() >= 5  # stratified: every digit is in validation
    train = task.split("train").inputs
    assert abs(float(train.mean())) < 1e-4 and abs(float(train.std()) - 1) < 1e-2
    assert torch.equal(task.batch(8, seed=3).inputs, configure("arrays", path=str(npz)).batch(8, seed=3).inputs)
    assert not torch.equal(task.batch(8, seed=3).inputs, task.batch(8, seed=4).inputs)
    assert task.batch().inputs.shape == (16, 1, 8, 8)
    with pytest.raises(ValueError, match="unknown split 'test'.*train, val"):
        task.split("test")


def test_arrays_own_splits_resize_and_channels_last(tmp_path, digits):
    x, y = digits
    rgb = np.repeat(x[..., None], 3, axis=-1)  # N×8×8×3: channels last
    path = tmp_path / "rgb.npz"
    np.savez(path, images=rgb[:250], labels=y[:250], vx=rgb[250:], vy=y[250:])
    task = configure("arrays", path=str(path), x_key="images", y_key="labels", val_keys=["vx", "vy"], image_size=12)
    assert task.layout == "nhwc" and task.input_shape == (3, 12, 12)
    assert task.split_sizes() == {"train": 250, "val": 50}
    assert torch.equal(task.split("val").targets, torch.as_tensor(y[250:]))
    first = configure("arrays", path=str(path), x_key="images", y_key="labels", layout="nchw", standardize=False)
    assert first.input_shape == (8, 8, 3)  # told NCHW, axis 1 is taken as 8 channels
    refused(
        "arrays",
        "leave val_fraction out",
        path=str(path),
        x_key="images",
        y_key="labels",
        val_keys=["vx", "vy"],
        val_fraction=0.1,
    )


def test_arrays_from_a_torch_file_with_string_labels_equals_the_npz(tmp_path, npz, digits):
    x, y = digits
    names = np.array([str(d) * 2 for d in y])
    path = tmp_path / "digits.pt"
    torch.save({"x": torch.from_numpy(x), "y": names.tolist(), "z": {"nested": 1}}, path)
    named = configure("arrays", path=str(path))
    assert named.classes == tuple(str(d) * 2 for d in range(10))
    assert torch.equal(named.split("val").targets, configure("arrays", path=str(npz)).split("val").targets)
    refused("arrays", "'z' is a dict, not an array", path=str(path), y_key="z")
    torch.save({"x": torch.from_numpy(x), "y": torch.from_numpy(y)}, path)
    from_pt = configure("arrays", path=str(path))
    from_npz = configure("arrays", path=str(npz))
    assert torch.equal(from_pt.split("train").inputs, from_npz.split("train").inputs)
    # The content, not the path or the format, keys the score cache; other data or settings change it.
    assert from_pt.fingerprint() == from_npz.fingerprint()
    copy = tmp_path / "elsewhere.npz"
    shutil.copy(npz, copy)
    assert configure("arrays", path=str(copy)).fingerprint() == from_npz.fingerprint()
    assert configure("arrays", path=str(npz), split_seed=1).fingerprint() != from_npz.fingerprint()
    np.savez(copy, x=x, y=(y + 1) % 10)
    assert configure("arrays", path=str(copy)).fingerprint() != from_npz.fingerprint()


def test_arrays_bad_input_is_one_line(tmp_path, npz, digits):
    x, y = digits
    refused("arrays", "task.path: no such file: nothing.npz", path="nothing.npz")
    refused("arrays", "is a folder, expected a file", path=str(tmp_path))
    (tmp_path / "a.csv").write_text("x,y\n1,2\n")
    refused("arrays", "unsupported file type '.csv' (allowed: .npz, .pt, .pth)", path=str(tmp_path / "a.csv"))
    binary = tmp_path / "noise.npz"
    binary.write_bytes(bytes(range(256)) * 4)
    refused("arrays", "is not a NumPy .npz archive", path=str(binary))
    refused("arrays", "is not a torch file of tensors", path=str(binary.rename(tmp_path / "noise.pt")))
    error = refused("arrays", "has no array 'images'", path=str(npz), x_key="images")
    assert error.key == "task.x_key" and error.allowed == ["x", "x_val", "y", "y_val"]
    refused("arrays", "task.val_keys: name two arrays", path=str(npz), val_keys=["x_val"])
    refused("arrays", "task.layout: 'chw' is not accepted", path=str(npz), layout="chw")
    odd = tmp_path / "odd.npz"
    np.savez(odd, x=x.reshape(len(x), -1), y=y)
    refused("arrays", "has shape 300×64: images are", path=str(odd))
    np.savez(odd, x=x, y=y[:-1])
    refused("arrays", "'y' has 299 labels for 300 images", path=str(odd))
    np.savez(odd, x=x, y=y * 0.5)
    refused("arrays", "non-integer numbers", path=str(odd))
    np.savez(odd, x=x, y=np.zeros_like(y))
    refused("arrays", "1 class(es); classification needs at least 2", path=str(odd))
    np.savez(odd, x=x[:20], y=y[:20], xv=x[:5], yv=np.full(5, 42))
    refused(
        "arrays", "the val data has label '42', which no training example has", path=str(odd), val_keys=["xv", "yv"]
    )
    np.savez(odd, x=x[:2], y=y[:2])
    refused(
        "arrays",
        "val_fraction 0.5 and test_fraction 0.4 of 2 examples leave no training example",
        path=str(odd),
        val_fraction=0.5,
        test_fraction=0.4,
    )
    assert configure("arrays", path=str(odd), val_fraction=0.5).split_sizes() == {"train": 1, "val": 1}


# -- image folders ---------------------------------------------------------------------------------
def test_image_folder_reads_classes_resizes_and_converts(png_folder, tmp_path):
    task = configure("image_folder", path=str(png_folder), image_size=10, val_fraction=0.5)
    assert task.input_shape == (3, 10, 10) and task.num_classes == 10
    assert task.split_sizes() == {"train": 30, "val": 30}
    gray = configure("image_folder", path=str(png_folder), image_size=8, color="grayscale", standardize=False)
    assert gray.input_shape == (1, 8, 8)
    # Unresized 8-bit grayscale: the pixels are exactly the PNGs' (scaled to [0, 1]).
    from PIL import Image

    first = min((png_folder / "0").iterdir())
    pixels = torch.from_numpy(np.asarray(Image.open(first), dtype=np.float32) / 255.0)
    every = torch.cat([gray.split("train").inputs, gray.split("val").inputs])
    assert any(torch.equal(image[0], pixels) for image in every)
    assert torch.equal(
        task.batch(5, seed=1).inputs,
        configure("image_folder", path=str(png_folder), image_size=10, val_fraction=0.5).batch(5, seed=1).inputs,
    )
    # Other files beside the images are ignored; a separate validation folder is the data's own split.
    (png_folder / "0" / "notes.txt").write_text("not an image")
    val = examples.digits_png(tmp_path / "val", per_class=2)
    own = configure("image_folder", path=str(png_folder), val_path=str(val), image_size=8)
    assert own.split_sizes() == {"train": 60, "val": 20}


def test_image_folder_bad_input_is_one_line(png_folder, tmp_path, wine):
    refused("image_folder", "task.path: no such folder: missing", path="missing")
    refused("image_folder", "is a file, expected a folder", path=str(wine))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "stray.png").write_bytes(b"")
    refused("image_folder", "has no class folders", path=str(empty))
    (empty / "cats").mkdir()
    (empty / "cats" / "readme.txt").write_text("no images here")
    refused("image_folder", "class folder", path=str(empty))
    broken = png_folder / "3" / "broken.png"
    broken.write_bytes(bytes(range(200)))
    refused("image_folder", "broken.png is not an image Pillow can read", path=str(png_folder))
    broken.unlink()
    refused(
        "image_folder",
        "task.color: 'cmyk' is not accepted (allowed: rgb, grayscale)",
        path=str(png_folder),
        color="cmyk",
    )
    refused("image_folder", "task.image_size: 2 is below the minimum 4", path=str(png_folder), image_size=2)


# -- CSV tables ------------------------------------------------------------------------------------
def test_csv_reads_numeric_features_and_a_named_label(wine):
    task = configure("csv", path=str(wine), label="cultivar", batch_size=8)
    assert task.kind == "tabular-classification" and task.input_shape == (13,) and task.num_classes == 3
    assert task.classes == ("class_0", "class_1", "class_2")
    assert task.split_sizes() == {"train": 142, "val": 36}
    assert task.batch().inputs.shape == (8, 13) and task.batch().inputs.dtype == torch.float32
    assert torch.allclose(task.split("train").inputs.mean(0), torch.zeros(13), atol=1e-5)
    two = configure("csv", path=str(wine), label="cultivar", features=["alcohol", "proline"], standardize=False)
    assert two.input_shape == (2,)
    from sklearn.datasets import load_wine

    raw = load_wine()
    rows = {tuple(np.round(r[[0, 12]], 4)) for r in raw.data}
    assert all(tuple(np.round(r.numpy().astype(np.float64), 4)) in rows for r in two.split("val").inputs)
    assert torch.equal(
        task.batch(4, seed=2).inputs, configure("csv", path=str(wine), label="cultivar").batch(4, seed=2).inputs
    )


def test_csv_missing_values_and_own_splits(tmp_path):
    train = tmp_path / "train.csv"
    train.write_text("a,b,kind\n1,2,x\n2,,y\n3,4,x\n4,5,y\n5,6,x\n6,7,y\n")
    val = tmp_path / "val.csv"
    val.write_text("a,b,kind\n1.5,2.5,x\n,3,y\n")
    refused("csv", "the train data has a missing value in column 'b'", path=str(train), label="kind", val_path=str(val))
    task = configure("csv", path=str(train), label="kind", val_path=str(val), missing="mean", standardize=False)
    assert task.split_sizes() == {"train": 6, "val": 2}
    assert task.split("train").inputs[1, 1] == pytest.approx((2 + 4 + 5 + 6 + 7) / 5)
    assert task.split("val").inputs[1, 0] == pytest.approx(3.5)


def test_csv_bad_input_is_one_line(tmp_path, wine):
    error = refused("csv", "has no column 'label'", path=str(wine))
    assert error.key == "task.label" and "cultivar" in error.allowed
    refused("csv", "column 'cultivar' is not numeric (row 2: 'class_0')", path=str(wine), label="alcohol")
    refused("csv", "task.features[1]: ", path=str(wine), label="cultivar", features=["alcohol", "colour"])
    refused("csv", "cannot be a feature", path=str(wine), label="cultivar", features=["cultivar"])
    refused("csv", "no such file", path=str(tmp_path / "none.csv"))
    binary = tmp_path / "data.csv"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00")
    refused("csv", "is a binary file, not text", path=str(binary))
    binary.write_bytes(b"a,b\n\xff\xfe,1\n")
    refused("csv", "is not UTF-8 text", path=str(binary))
    binary.write_text("a,b,label\n1,2,x\n3,y\n")
    refused("csv", "a row has 2 fields where the header has 3 (row 3)", path=str(binary))
    binary.write_text("")
    refused("csv", "is empty", path=str(binary))
    refused("csv", "task.missing: 'drop' is not accepted (allowed: error, mean)", path=str(wine), missing="drop")


# -- text files ------------------------------------------------------------------------------------
def test_text_jsonl_tokenizes_pads_left_and_builds_the_vocabulary_from_training_texts(texts):
    task = configure("text_csv", path=str(texts), seq_len=12, val_fraction=0.25)
    assert task.kind == "text-classification" and task.classes == ("cats", "dogs") and task.num_classes == 2
    assert task.vocab[:2] == ("<unk>", "<pad>") and task.vocab_size == len(task.vocab)
    data = task.split("train")
    assert data.inputs.shape == (30, 12) and data.inputs.dtype == torch.long
    cat = data.inputs[data.targets == 0][0]
    assert cat[0] == 1 and cat[-1] != 1  # padded on the left
    assert task.decode(cat).startswith("the cat sat on mat number")
    chars = configure("text_csv", path=str(texts), tokens="char", seq_len=8)
    assert "c" in chars.vocab and len(chars.decode(chars.split("train").inputs[0])) == 8
    again = configure("text_csv", path=str(texts), seq_len=12, val_fraction=0.25)
    assert torch.equal(task.batch(6, seed=5).inputs, again.batch(6, seed=5).inputs)
    assert task.fingerprint() == again.fingerprint()
    assert (
        configure("text_csv", path=str(texts), seq_len=12, vocab_size=16, val_fraction=0.25).fingerprint()
        != task.fingerprint()
    )


def test_text_csv_with_named_columns_matches_the_jsonl(tmp_path, texts):
    import csv

    rows = [json.loads(line) for line in texts.read_text().splitlines()]
    path = tmp_path / "texts.csv"
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["id", "body", "topic"])
        writer.writerows([i, r["text"], r["label"]] for i, r in enumerate(rows))
    from_csv = configure("text_csv", path=str(path), text="body", label="topic", seq_len=12)
    from_jsonl = configure("text_csv", path=str(texts), seq_len=12)
    assert torch.equal(from_csv.split("val").inputs, from_jsonl.split("val").inputs)
    assert from_csv.fingerprint() == from_jsonl.fingerprint()


def test_text_bad_input_is_one_line(tmp_path, texts, wine):
    error = refused("text_csv", "line 1 has no field 'body'", path=str(texts), text="body")
    assert error.key == "task.text" and error.allowed == ["label", "text"]
    refused("text_csv", "has no column 'text'", path=str(wine))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine", "label": "a"}\n{"text": broken\n')
    refused("text_csv", "line 2 is not valid JSON", path=str(bad))
    bad.write_text('{"text": null, "label": "a"}\n')
    refused("text_csv", "record 1 has no text (found None)", path=str(bad))
    other = tmp_path / "texts.txt"
    other.write_text("hello")
    refused("text_csv", "cannot tell the format from '.txt'; set format (allowed: csv, jsonl)", path=str(other))
    binary = tmp_path / "blob.jsonl"
    binary.write_bytes(bytes(range(256)))
    refused("text_csv", "is a binary file", path=str(binary))
    refused("text_csv", "task.tokens: 'bpe' is not accepted", path=str(texts), tokens="bpe")


# -- Python: tensors and datasets ------------------------------------------------------------------
def test_from_data_builds_image_tabular_and_text_tasks(digits):
    x, y = digits
    images = from_data(torch.from_numpy(x).float().unsqueeze(1), torch.from_numpy(y))
    assert images.kind == "image-classification" and images.input_shape == (1, 8, 8) and images.num_classes == 10
    nhwc = from_data(np.repeat(x[..., None], 3, -1).astype(np.float32), y, layout="nhwc")
    assert nhwc.input_shape == (3, 8, 8)
    table = from_data(torch.randn(50, 4), torch.arange(50) % 2, val_fraction=0.3)
    assert table.kind == "tabular-classification" and table.split_sizes() == {"train": 35, "val": 15}
    tokens = from_data(torch.randint(0, 30, (40, 6)), ["a", "b"] * 20)
    assert tokens.kind == "text-classification" and tokens.vocab_size <= 30 and tokens.classes == ("a", "b")

    dataset = torch.utils.data.TensorDataset(torch.from_numpy(x).float().unsqueeze(1), torch.from_numpy(y))
    from_dataset = from_data(dataset, val=torch.utils.data.Subset(dataset, range(20)))
    assert from_dataset.split_sizes() == {"train": 300, "val": 20}
    assert from_data(dataset).fingerprint() == images.fingerprint()
    assert torch.equal(from_data(dataset).batch(4, seed=1).inputs, images.batch(4, seed=1).inputs)


def test_from_data_bad_input_is_one_line():
    for call, match in (
        (lambda: from_data(torch.randn(10, 3)), "labels are missing"),
        (lambda: from_data(torch.randn(10, 3), torch.zeros(9)), "9 labels for 10 inputs"),
        (
            lambda: from_data(torch.randn(10, 3), torch.arange(10) % 2, kind="audio"),
            "task.kind: 'audio' is not accepted",
        ),
        (lambda: from_data([(torch.zeros(2), 0), (torch.zeros(3), 1)]), "do not stack"),
        (lambda: from_data(torch.randn(10, 3, 2, 2, 2), torch.arange(10) % 2), "images are N×H×W or N×C×H×W"),
    ):
        with pytest.raises(SpaceError, match=match) as caught:
            call()
        assert "\n" not in str(caught.value)


def test_as_task_takes_a_task_a_pair_or_a_dataset(digits):
    x, y = digits
    images = torch.from_numpy(x).float().unsqueeze(1)
    task = from_data(images, y)
    assert as_task(task) is task
    assert as_task((images, y)).fingerprint() == task.fingerprint()
    dataset = torch.utils.data.TensorDataset(images, torch.from_numpy(y))
    assert as_task(dataset).fingerprint() == task.fingerprint()


def test_with_task_puts_python_data_into_a_space_and_revalidates(nb201_space_dict, digits):
    x, y = digits
    space = SearchSpace.from_dict(nb201_space_dict)
    task = from_data(torch.from_numpy(x).float().unsqueeze(1), torch.from_numpy(y))
    mine = with_task(space, task)
    assert mine.task is task and mine.raw["task"] == {"name": "tensors"}
    candidate = mine.sample(optuna.create_study().ask())
    assert candidate.task is task
    assert candidate.build_model()(task.batch(3).inputs).shape == (3, 10)
    with pytest.raises(SpaceError, match="cannot take a tabular-classification task"):
        with_task(space, from_data(torch.randn(20, 4), torch.arange(20) % 2))


# -- the command line ------------------------------------------------------------------------------
def test_the_command_line_prints_one_line_for_a_bad_data_file(tmp_path, capsys):
    space = tmp_path / "space.toml"
    space.write_text(
        '[task]\nname = "csv"\npath = "missing.csv"\n[[dimensions]]\nname = "mlp"\n'
        '[evaluator]\nname = "training"\n[[objectives]]\nmetric = "val_accuracy"\n'
    )
    assert main(["run", str(space), "--storage", ":memory:"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"automl: error: {space}: task.path: no such file: missing.csv"
