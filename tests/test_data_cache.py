"""Derived caches (decoded images, extracted archives) live outside the data folder, are
announced when written, and are rebuilt when a source file's size or modification time changes.

Every dataset is a tiny fixture in tmp_path; XDG_CACHE_HOME or HOME is redirected into tmp_path.
"""
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gbml_ext.data import images, load_cifar_fs, load_mini_imagenet, load_omniglot
from gbml_ext.data.cache import cache_folder, cache_root
from vision_fixtures import (
    snapshot_tree,
    write_bertinetto_splits,
    write_cifar100_tree,
    write_mini_imagenet_csv,
    write_omniglot_archive,
    write_omniglot_tree,
)

TINY = {"split_sizes": (4, 2, 2), "rotations": False}
FIRST_PNG = "omniglot-py/images_background/Alpha/character01/0001_01.png"
CIFAR_SPLITS = {"train": ["a", "b", "c"], "val": ["d", "e"], "test": ["f", "g"]}


@pytest.fixture
def xdg(tmp_path, monkeypatch):
    folder = tmp_path / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(folder))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # messages print paths in full
    return folder


def announcements(capsys):
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("gbml_ext:")]


def blacken(png: Path) -> None:
    """Replace an Omniglot drawing by an all-ink one (another size), with a later mtime."""
    stamp = png.stat().st_mtime_ns + 10**10
    Image.new("L", (105, 105), 0).save(png)
    os.utime(png, ns=(stamp, stamp))


def first_train_image(data):
    return data["train"].dataset.images[0]


def omniglot_folder(tmp_path):
    root = write_omniglot_tree(tmp_path / "data")
    return root, root / "omniglot-py", lambda: load_omniglot(root, **TINY)


def omniglot_archive(tmp_path):
    folder = tmp_path / "data"
    tree = write_omniglot_tree(tmp_path / "tree")
    folder.mkdir()
    archive = write_omniglot_archive(tree, folder / "omniglot-py.tar.gz")
    return folder, archive, lambda: load_omniglot(archive, **TINY)


def mini_imagenet_csv(tmp_path):
    root = write_mini_imagenet_csv(tmp_path / "data", images_per_class=2)
    return root, root, lambda: load_mini_imagenet(root, format="csv")


def cifar_fs(tmp_path):
    root = write_cifar100_tree(tmp_path / "data", list("abcdefg"), images_per_class=2)
    write_bertinetto_splits(root, CIFAR_SPLITS)
    return root, root / "cifar100", lambda: load_cifar_fs(root)


@pytest.mark.parametrize("make, cache_name", [
    (omniglot_folder, "omniglot"), (omniglot_archive, "omniglot"),
    (mini_imagenet_csv, "mini-imagenet"), (cifar_fs, "cifar100")])
def test_loading_leaves_the_data_folder_untouched(make, cache_name, tmp_path, xdg, capsys):
    data_folder, source, load = make(tmp_path)
    before = snapshot_tree(data_folder)
    load()
    load()
    assert snapshot_tree(data_folder) == before
    caches = list((xdg / "gbml_ext" / cache_name).rglob("*.npz"))
    assert caches and all(path.parent == cache_folder(cache_name, source) for path in caches)
    printed = capsys.readouterr().err
    assert all(printed.count(str(path)) == 1 for path in caches)  # announced once, not twice


def test_default_cache_is_under_home_without_xdg(tmp_path, monkeypatch):
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    root = write_omniglot_tree(tmp_path / "data")
    load_omniglot(root, **TINY)
    assert cache_root() == tmp_path / "home" / ".cache" / "gbml_ext"
    assert len(list((cache_root() / "omniglot").rglob("omniglot-28x28.npz"))) == 1


def test_cache_dir_option_is_used_as_is(tmp_path, xdg):
    root = write_omniglot_tree(tmp_path / "data")
    load_omniglot(root, cache_dir=tmp_path / "mine", **TINY)
    assert (tmp_path / "mine" / "omniglot-28x28.npz").is_file()
    assert not xdg.exists()


def test_first_load_announces_and_shows_progress_later_loads_are_silent(
        tmp_path, xdg, capsys, monkeypatch):
    bars = []

    def recording_tqdm(iterable, **options):
        bars.append((len(iterable), options))
        return iterable
    monkeypatch.setattr(images, "tqdm", recording_tqdm)
    root = write_omniglot_tree(tmp_path / "data")
    load_omniglot(root, **TINY)
    first = announcements(capsys)
    assert len(first) == 1 and "decoding 32 omniglot images once into" in first[0]
    assert str(xdg / "gbml_ext" / "omniglot") in first[0] and "later loads read it" in first[0]
    assert [count for count, _ in bars] == [32]
    load_omniglot(root, **TINY)
    load_omniglot(root / "omniglot-py", **TINY)  # the same tree, so the same cache
    assert announcements(capsys) == [] and len(bars) == 1


def test_changed_image_rebuilds_the_cache_with_its_new_pixels(tmp_path, xdg, capsys):
    root = write_omniglot_tree(tmp_path / "data")
    before = load_omniglot(root, **TINY)
    assert first_train_image(before).float().mean() < 128  # inverted: mostly background
    capsys.readouterr()
    blacken(root / FIRST_PNG)
    after = load_omniglot(root, **TINY)
    assert "no longer matches the omniglot source files" in " ".join(announcements(capsys))
    assert (first_train_image(after) == 255).all()  # all ink, inverted
    assert (before["test"].dataset.images == after["test"].dataset.images).all()
    load_omniglot(root, **TINY)
    assert announcements(capsys) == []


def test_touched_image_rebuilds_the_cache(tmp_path, xdg, capsys):
    root = write_omniglot_tree(tmp_path / "data")
    load_omniglot(root, **TINY)
    capsys.readouterr()
    png = root / FIRST_PNG
    stamp = png.stat().st_mtime_ns + 10**10
    os.utime(png, ns=(stamp, stamp))
    load_omniglot(root, **TINY)
    assert len(announcements(capsys)) == 1


def test_archive_source_is_keyed_by_the_archive(tmp_path, xdg, capsys):
    tree = write_omniglot_tree(tmp_path / "tree")
    archive = write_omniglot_archive(tree, tmp_path / "omniglot-py.tar.gz")
    load_omniglot(archive, **TINY)
    first = announcements(capsys)
    assert [line.split()[1] for line in first] == ["extracting", "decoding"]
    load_omniglot(archive, **TINY)
    assert announcements(capsys) == []

    blacken(tree / FIRST_PNG)
    write_omniglot_archive(tree, archive)
    stamp = archive.stat().st_mtime_ns + 10**10
    os.utime(archive, ns=(stamp, stamp))
    after = load_omniglot(archive, **TINY)
    assert len(announcements(capsys)) == 2
    assert (first_train_image(after) == 255).all()


def test_an_unwritable_cache_only_warns(tmp_path, xdg):
    root = write_omniglot_tree(tmp_path / "data")
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    with pytest.warns(UserWarning, match="could not write image cache"):
        data = load_omniglot(root, cache_dir=not_a_folder, **TINY)
    assert len(data["train"]) == 16


def test_an_old_cache_in_the_data_folder_is_pointed_out_not_touched(tmp_path, xdg, capsys):
    root = write_omniglot_tree(tmp_path / "data")
    old = root / "omniglot-py" / "omniglot-28x28.npz"
    np.savez(old, images=np.zeros(1))
    before = snapshot_tree(root)
    load_omniglot(root, **TINY)
    assert any(str(old) in line and "no longer read" in line for line in announcements(capsys))
    assert snapshot_tree(root) == before


def test_a_process_that_waited_for_the_extraction_lock_reuses_the_finished_tree(tmp_path):
    """Two shards loading Omniglot at once: the second must not replace the tree the first just
    extracted (its readers would find files gone)."""
    import fcntl
    import tarfile
    import threading
    import time

    from gbml_ext.data import archives

    source = tmp_path / "src" / "omniglot-py"
    source.mkdir(parents=True)
    (source / "image.txt").write_text("pixels")
    archive = tmp_path / "omniglot-py.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source, arcname="omniglot-py")
    cache = tmp_path / "cache"
    cache.mkdir()
    with open(cache / ".extract.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # "another process" is extracting
        waiter = threading.Thread(target=archives.extract_archive_once,
                                  args=(archive, "omniglot-py", cache, "omniglot"))
        waiter.start()
        time.sleep(0.3)
        assert waiter.is_alive()  # blocked on the lock
        size, mtime_ns = (int(v) for v in archives.file_stamps([archive])[0])
        archives._extract(archive, "omniglot-py", cache, "omniglot",
                          {"archive": str(archive), "size": size, "mtime_ns": mtime_ns})
        (cache / "omniglot-py" / "in-use.txt").write_text("a reader holds this tree")
        fcntl.flock(held, fcntl.LOCK_UN)
    waiter.join(timeout=30)
    assert not waiter.is_alive()
    assert (cache / "omniglot-py" / "in-use.txt").exists()  # not extracted a second time
    assert (cache / "omniglot-py" / "image.txt").read_text() == "pixels"


def test_a_process_that_waited_for_the_cache_lock_reads_the_cache_written_meanwhile(
        tmp_path, capsys):
    """Runs that start together on a fresh cache decode the images once: one decodes, the
    others wait for its lock and read what it wrote."""
    import fcntl
    import threading
    import time

    files = []
    for i in range(3):
        files.append(tmp_path / f"{i}.png")
        Image.new("L", (28, 28), 40 * i).save(files[-1])
    keys = [f.name for f in files]
    cache = tmp_path / "cache" / "images.npz"
    cache.parent.mkdir()
    found = {}

    def load() -> None:
        found["images"] = images.decode_images_cached(files, keys, (28, 28), "L", cache,
                                                      "omniglot", tmp_path)

    with open(cache.parent / ".images.npz.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # "another process" is decoding
        waiter = threading.Thread(target=load)
        waiter.start()
        time.sleep(0.3)
        assert waiter.is_alive()  # blocked on the lock
        written = np.full((3, 28, 28), 7, dtype=np.uint8)  # not what decoding would give
        np.savez(cache, images=written, keys=np.asarray(keys, dtype=str),
                 stamps=images.file_stamps(files))
        fcntl.flock(held, fcntl.LOCK_UN)
    waiter.join(timeout=30)
    assert not waiter.is_alive()
    np.testing.assert_array_equal(found["images"], written)  # read, not decoded again
    assert announcements(capsys) == []
