"""Few-shot vision loaders on tiny fixtures in each dataset's real on-disk format.

Nothing here reads the shared real data: every dataset is written into pytest's tmp_path by
`vision_fixtures`, and the default cache folder is redirected into tmp_path too.
"""
import pickle

import pytest
import torch

from gbml_ext.data import (
    DatasetError,
    build_task_sources,
    images,
    load_cifar_fs,
    load_fc100,
    load_mini_imagenet,
    load_omniglot,
)
from vision_fixtures import (
    assert_task,
    write_bertinetto_splits,
    write_cifar100_tree,
    write_fc100_split_files,
    write_mini_imagenet_csv,
    write_mini_imagenet_pickles,
    write_omniglot_archive,
    write_omniglot_tree,
    write_vinyals_split_files,
)

SPLITS = ("train", "validation", "test")
TINY_OMNIGLOT_SIZES = (4, 2, 2)  # the fixture's 8 characters, cut like MAML's 1100/100/423
CIFAR_FS_SPLITS = {"train": ["apple", "bear", "bed", "bee", "bottle"],
                   "val": ["baby", "boy", "girl"],
                   "test": ["bicycle", "bus", "train"]}


def base_classes(meta_dataset):
    return {name.split("@")[0] for name in meta_dataset.dataset.class_names}


def assert_splits_disjoint(datasets):
    for a in SPLITS:
        for b in SPLITS:
            if a < b:
                assert not base_classes(datasets[a]) & base_classes(datasets[b]), (a, b)


@pytest.fixture(autouse=True)
def _private_cache_home(tmp_path, monkeypatch):
    """Loads without cache_dir write under XDG_CACHE_HOME: keep them out of the real ~/.cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


@pytest.fixture
def omniglot_root(tmp_path):
    return write_omniglot_tree(tmp_path / "data")


@pytest.fixture
def cifar_root(tmp_path):
    classes = {name for names in CIFAR_FS_SPLITS.values() for name in names}
    fc100_classes = {"aquarium_fish", "flatfish", "ray", "shark", "trout", "orchid", "poppy",
                     "rose", "sunflower", "tulip", "beetle", "butterfly", "caterpillar",
                     "cockroach", "man", "woman"}
    root = write_cifar100_tree(tmp_path / "cifar", sorted(classes | fc100_classes),
                               images_per_class=4)
    return write_bertinetto_splits(root, CIFAR_FS_SPLITS)


# ----------------------------------------------------------------------------------- Omniglot

def test_omniglot_maml_split_counts_shapes_and_rotations(omniglot_root, tmp_path):
    data = load_omniglot(omniglot_root, split_sizes=TINY_OMNIGLOT_SIZES,
                         cache_dir=tmp_path / "cache")
    assert {k: len(v.labels) for k, v in data.items()} == {"train": 16, "validation": 8, "test": 8}
    assert {k: len(v) for k, v in data.items()} == {"train": 64, "validation": 32, "test": 32}
    assert_splits_disjoint(data)
    # Sorted background characters come first, so train holds the 4 first background ones.
    assert min(base_classes(data["train"])) == "images_background/Alpha/character01"
    assert all(c.startswith("images_evaluation") for c in base_classes(data["test"]))
    image, _ = data["train"][0]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert image.mean() < 0.5  # inverted: strokes are 1 on a 0 background

    plain = load_omniglot(omniglot_root, split_sizes=TINY_OMNIGLOT_SIZES, rotations=False,
                          cache_dir=tmp_path / "cache")
    assert ({k: len(v.labels) * 4 for k, v in plain.items()}
            == {k: len(v.labels) for k, v in data.items()})
    # Sample j of the rotated set is image j % N turned by 90 degrees per j // N.
    n = len(plain["train"])
    turned, turned_label = data["train"][n + 3]
    assert torch.equal(turned, torch.rot90(plain["train"][3][0], 1, dims=(1, 2)))
    assert data["train"].dataset.class_names[turned_label].endswith("@90")


def test_omniglot_vinyals_split_from_json(omniglot_root, tmp_path):
    split_dir = write_vinyals_split_files(tmp_path / "splits", {
        "train": ["images_background/Alpha/character01", "images_background/Alpha/character02",
                  "images_background/Beta/character01"],
        "val": ["images_background/Alpha/character03", "images_background/Beta/character02"],
        "test": ["images_evaluation/Gamma/character01", "images_evaluation/Gamma/character02",
                 "images_evaluation/Gamma/character03"]})
    data = load_omniglot(omniglot_root, split="vinyals", split_dir=split_dir, rotations=False,
                         cache_dir=tmp_path / "cache")
    assert {k: len(v.labels) for k, v in data.items()} == {"train": 3, "validation": 2, "test": 3}
    assert base_classes(data["validation"]) == {"images_background/Alpha/character03",
                                                "images_background/Beta/character02"}
    assert_splits_disjoint(data)


def test_omniglot_archive_is_extracted_once_and_images_cached(omniglot_root, tmp_path, monkeypatch):
    archive = write_omniglot_archive(omniglot_root, tmp_path / "omniglot-py.tar.gz")
    cache = tmp_path / "cache"
    first = load_omniglot(archive, split_sizes=TINY_OMNIGLOT_SIZES, cache_dir=cache)
    assert (cache / "omniglot-py" / "images_background").is_dir()
    assert (cache / "omniglot-28x28.npz").is_file()

    def no_decoding(*args, **kwargs):
        raise AssertionError("the cache should have been used")
    monkeypatch.setattr(images, "_decode_image", no_decoding)
    second = load_omniglot(archive, split_sizes=TINY_OMNIGLOT_SIZES, cache_dir=cache)
    assert torch.equal(first["test"][5][0], second["test"][5][0])


def test_omniglot_errors_name_problem_and_fix(omniglot_root, tmp_path):
    with pytest.raises(DatasetError, match="Omniglot root not found") as error:
        load_omniglot(tmp_path / "nowhere")
    assert "images_background.zip" in str(error.value)
    assert "brendenlake/omniglot" in str(error.value)

    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="omniglot-py"):
        load_omniglot(tmp_path / "empty")

    with pytest.raises(DatasetError, match="found 8 Omniglot characters.*1623"):
        load_omniglot(omniglot_root, cache_dir=tmp_path / "cache")  # default 1100/100/423

    with pytest.raises(DatasetError, match="needs split_dir"):
        load_omniglot(omniglot_root, split="vinyals", cache_dir=tmp_path / "cache")
    with pytest.raises(DatasetError, match=r"split file not found.*train\.json"):
        load_omniglot(omniglot_root, split="vinyals", split_dir=tmp_path / "no-splits",
                      cache_dir=tmp_path / "cache")

    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(b"\x1f\x8b\x08\x00 not really gzip")
    with pytest.raises(DatasetError, match="truncated or damaged"):
        load_omniglot(broken, cache_dir=tmp_path / "cache2")

    import shutil
    shutil.rmtree(omniglot_root / "omniglot-py" / "images_evaluation")
    with pytest.raises(DatasetError, match="images_evaluation not found") as error:
        load_omniglot(omniglot_root, cache_dir=tmp_path / "cache")
    assert "images_evaluation.zip" in error.value.fix


# ----------------------------------------------------------------------------- mini-ImageNet

def test_mini_imagenet_pickles(tmp_path):
    root = write_mini_imagenet_pickles(tmp_path / "mini", images_per_class=6)
    data = load_mini_imagenet(root)
    assert {k: len(v.labels) for k, v in data.items()} == {"train": 5, "validation": 3, "test": 3}
    assert {k: len(v) for k, v in data.items()} == {"train": 30, "validation": 18, "test": 18}
    assert_splits_disjoint(data)
    with open(root / "mini-imagenet-cache-train.pkl", "rb") as stream:
        raw = pickle.load(stream)
    name, indices = next(iter(raw["class_dict"].items()))
    dataset = data["train"].dataset
    label = dataset.class_names.index(name)
    stored = sorted(dataset.images[i].permute(1, 2, 0).numpy().tobytes()
                    for i in data["train"].labels_to_indices[label])
    assert stored == sorted(raw["image_data"][i].tobytes() for i in indices)
    image, _ = data["test"][0]
    assert image.shape == (3, 84, 84) and image.dtype == torch.float32


def test_mini_imagenet_csv_resizes_and_caches(tmp_path):
    root = write_mini_imagenet_csv(tmp_path / "mini", images_per_class=4, size=(100, 90))
    data = load_mini_imagenet(root, cache_dir=tmp_path / "cache")
    assert {k: len(v.labels) for k, v in data.items()} == {"train": 4, "validation": 3, "test": 3}
    assert data["train"][0][0].shape == (3, 84, 84)
    assert (tmp_path / "cache" / "mini-imagenet-train-84x84.npz").is_file()
    assert_splits_disjoint(data)


def test_mini_imagenet_errors_name_problem_and_fix(tmp_path):
    with pytest.raises(DatasetError, match="mini-ImageNet root not found") as error:
        load_mini_imagenet(tmp_path / "nowhere")
    assert "mini-imagenet-cache-train.pkl" in str(error.value) and "train.csv" in str(error.value)

    root = write_mini_imagenet_pickles(tmp_path / "mini")
    (root / "mini-imagenet-cache-test.pkl").unlink()
    with pytest.raises(DatasetError, match="no mini-ImageNet test split") as error:
        load_mini_imagenet(root)
    assert "mini-imagenet-cache-test.pkl" in str(error.value) and "test.csv" in str(error.value)

    whole = (root / "mini-imagenet-cache-train.pkl").read_bytes()
    (root / "mini-imagenet-cache-train.pkl").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DatasetError, match="truncated") as error:
        load_mini_imagenet(root, splits=("train",))
    assert "re-download" in str(error.value)

    (root / "mini-imagenet-cache-train.pkl").write_bytes(
        b"<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title>")
    with pytest.raises(DatasetError, match="HTML page") as error:
        load_mini_imagenet(root, splits=("train",))
    assert "Google Drive" in str(error.value) and "re-download" in str(error.value)


def test_mini_imagenet_refuses_pickles_with_foreign_code(tmp_path):
    root = write_mini_imagenet_pickles(tmp_path / "mini", classes={"validation": 2})
    marker = tmp_path / "executed"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))
    (root / "mini-imagenet-cache-validation.pkl").write_bytes(pickle.dumps(Payload(), protocol=4))
    with pytest.raises(DatasetError, match="refusing to load global"):
        load_mini_imagenet(root, splits=("validation",))
    assert not marker.exists()


def test_mini_imagenet_csv_missing_images(tmp_path):
    root = write_mini_imagenet_csv(tmp_path / "mini", images_per_class=2)
    victim = min((root / "images").iterdir())
    victim.unlink()
    with pytest.raises(DatasetError, match=f"missing from .*{victim.name}"):
        load_mini_imagenet(root, format="csv")


# ------------------------------------------------------------------------------ CIFAR-FS, FC100

def test_cifar_fs_splits_and_shapes(cifar_root, tmp_path):
    data = load_cifar_fs(cifar_root, cache_dir=tmp_path / "cache")
    assert {k: sorted(v.dataset.class_names) for k, v in data.items()} == {
        "train": CIFAR_FS_SPLITS["train"], "validation": CIFAR_FS_SPLITS["val"],
        "test": CIFAR_FS_SPLITS["test"]}
    assert {k: len(v) for k, v in data.items()} == {"train": 20, "validation": 12, "test": 12}
    image, _ = data["train"][0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert (tmp_path / "cache" / "cifar100-32x32.npz").is_file()


def test_cifar_fs_errors_name_problem_and_fix(cifar_root, tmp_path):
    with pytest.raises(DatasetError, match="CIFAR-100 root not found") as error:
        load_cifar_fs(tmp_path / "nowhere")
    assert "cifar100/data" in str(error.value) and "bertinetto" in str(error.value)

    (cifar_root / "cifar100" / "splits" / "bertinetto" / "val.txt").unlink()
    with pytest.raises(DatasetError, match=r"split file not found.*val\.txt"):
        load_cifar_fs(cifar_root)

    write_bertinetto_splits(cifar_root, {"val": ["baby", "dinosaur"]})
    with pytest.raises(DatasetError, match="'dinosaur'"):
        load_cifar_fs(cifar_root, cache_dir=tmp_path / "cache")


def test_fc100_superclass_split(cifar_root, tmp_path):
    split_dir = write_fc100_split_files(tmp_path / "fc100", {
        "train": ["fish", "flowers"], "val": ["insects"], "test": ["people"]})
    data = load_fc100(cifar_root, split_dir=split_dir, cache_dir=tmp_path / "cache")
    assert {k: len(v.labels) for k, v in data.items()} == {"train": 10, "validation": 5, "test": 5}
    assert "tulip" in data["train"].dataset.class_names
    assert set(data["test"].dataset.class_names) == {"baby", "boy", "girl", "man", "woman"}
    assert_splits_disjoint(data)

    with pytest.raises(DatasetError, match=r"split file not found.*val\.json"):
        load_fc100(cifar_root, split_dir=tmp_path / "elsewhere", splits=("validation",))
    # The built-in 12/4/4 split needs classes the fixture lacks.
    with pytest.raises(DatasetError, match="classes of the split have no images"):
        load_fc100(cifar_root, cache_dir=tmp_path / "cache")


# ---------------------------------------------------------------------------------- registry

def test_build_task_sources_for_every_dataset(omniglot_root, cifar_root, tmp_path):
    fc100_dir = write_fc100_split_files(tmp_path / "fc100", {
        "train": ["fish", "flowers"], "val": ["insects"], "test": ["people"]})
    cases = {
        "omniglot": (omniglot_root,
                     {"split_sizes": TINY_OMNIGLOT_SIZES, "cache_dir": tmp_path / "c1"},
                     (1, 28, 28)),
        "mini-imagenet": (write_mini_imagenet_pickles(tmp_path / "mini"), {}, (3, 84, 84)),
        "cifar-fs": (cifar_root, {"cache_dir": tmp_path / "c2"}, (3, 32, 32)),
        "fc100": (cifar_root, {"split_dir": fc100_dir, "cache_dir": tmp_path / "c2"}, (3, 32, 32)),
    }
    for name, (root, options, image_shape) in cases.items():
        sources = build_task_sources(name, root, ways=3, shots=1, queries=2, seed=0, **options)
        assert set(sources) == set(SPLITS), name
        for source in sources.values():
            assert_task(source.sample(), 3, 1, 2, image_shape)
    with pytest.raises(ValueError, match="unknown dataset"):
        build_task_sources("imagenet-21k", tmp_path, 5, 1, 1)
