"""Omniglot (Lake et al. 2015) read straight from its extracted folder tree.

Layout (torchvision's, but read without torchvision, whose `Omniglot` class insists on the
original zips and refuses an extracted tree):

    ROOT/omniglot-py/images_background/<alphabet>/characterNN/*.png   (964 characters)
    ROOT/omniglot-py/images_evaluation/<alphabet>/characterNN/*.png   (659 characters)

ROOT may also be a `.tar.gz` of the `omniglot-py` folder; it is extracted once into the cache
folder (`cache_dir`, or a folder under ~/.cache/gbml_ext/omniglot/, see `gbml_ext.data.cache`)
and extracted again only when the archive's size or modification time changes.

Preprocessing follows MAML (Finn et al. 2017): each 105x105 drawing is resized to 28x28 with
Lanczos filtering, kept as 1 channel, scaled to [0, 1] and inverted (`invert=True`) so that
strokes are 1 and background 0. With `rotations=True` every character turned by 0, 90, 180 and
270 degrees is a class of its own, so 1623 characters give 6492 classes.

Splits (`split=`):
    "maml": background then evaluation characters, each ordered by (alphabet, character) name,
        pooled and cut 1100 / 100 / 423 into train / validation / test: the sizes of the MAML and
        learn2learn convention. (MAML and learn2learn shuffle the characters with a seed before
        cutting; this loader keeps the sorted order so the split needs no RNG.)
    "vinyals": the Vinyals et al. (2016) split of 1028 / 172 / 423 characters, read from
        `split_dir/{train,val,test}.json` in torchmeta's format:
        {"background": {"<alphabet>": ["character01", ...]}, "evaluation": {...}}.

Decoded 28x28 images are cached in a `.npz` in the same cache folder, never in the data folder,
so that later loads skip the 32,460 PNG decodes; the first load announces it on stderr.

Citation: B. M. Lake, R. Salakhutdinov, J. B. Tenenbaum. Human-level concept learning through
probabilistic program induction. Science, 2015.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from learn2learn.data import MetaDataset

from .archives import extract_archive_once
from .cache import cache_folder
from .datasets import SPLIT_FILE_STEMS, SPLIT_NAMES, class_split_dataset
from .errors import DatasetError, how_to_get, require_path
from .images import decode_images_cached

__all__ = ["MAML_SPLIT_SIZES", "OMNIGLOT_SUBSETS", "load_omniglot"]

OMNIGLOT_SUBSETS = ("images_background", "images_evaluation")
MAML_SPLIT_SIZES = (1100, 100, 423)
_TREE_NAME = "omniglot-py"
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")


def load_omniglot(root: str | Path, split: str = "maml", split_dir: str | Path | None = None,
                  split_sizes: Sequence[int] = MAML_SPLIT_SIZES, rotations: bool = True,
                  image_size: int = 28, invert: bool = True, cache_dir: str | Path | None = None,
                  splits: Sequence[str] = SPLIT_NAMES) -> dict[str, MetaDataset]:
    """Load Omniglot as one learn2learn `MetaDataset` per split.

    Arguments:
        root: folder holding `omniglot-py/` (or the `omniglot-py` folder itself), or a .tar.gz.
        split: "maml" (sorted characters cut by `split_sizes`) or "vinyals" (JSON in `split_dir`).
        split_dir: folder with train.json, val.json, test.json; needed for split="vinyals".
        split_sizes: characters in train / validation / test for split="maml"; they must add up
            to the number of characters found (1623 for the full dataset).
        rotations: make each of the 4 quarter-turn rotations of a character its own class.
        image_size: side of the square images after resizing.
        invert: strokes 1, background 0 (MAML); False keeps the PNG's white background as 1.
        cache_dir: where to extract an archive root and keep the decoded-image cache
            (default: a folder per root under ~/.cache/gbml_ext/omniglot/, or under
            $XDG_CACHE_HOME/gbml_ext/omniglot/; never inside the data folder).
        splits: which of "train", "validation", "test" to return.

    Returns: {split: MetaDataset} with items (image (1, image_size, image_size) float in [0, 1],
        label); `.dataset.class_names` lists "images_background/<alphabet>/characterNN[@90]".

    Example:
        >>> data = load_omniglot("data/")  # doctest: +SKIP
        >>> len(data["train"].labels), data["train"][0][0].shape  # doctest: +SKIP
        (4400, torch.Size([1, 28, 28]))
    """
    source = require_path(Path(root).expanduser(), "Omniglot root", "omniglot", root)
    is_archive = source.is_file()
    if is_archive:
        cache = cache_folder("omniglot", source, cache_dir)
        tree = _extract_archive(source, cache)
    else:
        tree = _locate_tree(source)
        cache = cache_folder("omniglot", tree, cache_dir)
    characters, image_files = _discover_characters(tree, root)
    cache_name = f"omniglot-{image_size}x{image_size}.npz"
    images = decode_images_cached(
        [tree / key for key in image_files], image_files, (image_size, image_size), "L",
        cache / cache_name, "omniglot", root, stamped_by=[source] if is_archive else None,
        old_cache_file=None if is_archive else tree / cache_name)
    if invert:
        images = 255 - images
    image_characters = [key.rsplit("/", 1)[0] for key in image_files]
    split_characters = _split_characters(characters, split, split_dir, split_sizes, root)
    quarter_turns = (0, 1, 2, 3) if rotations else (0,)
    return {name: class_split_dataset(images, image_characters, split_characters[name],
                                      quarter_turns, "omniglot", root)
            for name in splits}


def _extract_archive(archive: Path, cache: Path) -> Path:
    """Extract an `omniglot-py` archive into the cache folder (once) and return the tree."""
    if not archive.name.endswith(_ARCHIVE_SUFFIXES):
        raise DatasetError(f"Omniglot root {archive} is a file but not a .tar.gz archive",
                           how_to_get("omniglot", archive.parent))
    # Not next to the archive: shared data folders are often read-only, and writing into them
    # would change what every other user of the folder sees.
    return extract_archive_once(archive, _TREE_NAME, cache, "omniglot")


def _locate_tree(root: Path) -> Path:
    """The folder holding images_background/ and images_evaluation/ under a folder root."""
    if (root / _TREE_NAME).is_dir():
        return root / _TREE_NAME
    if any((root / subset).is_dir() for subset in OMNIGLOT_SUBSETS):
        return root
    raise DatasetError(f"no Omniglot tree in {root}: expected {root / _TREE_NAME}/"
                       "images_background and images_evaluation", how_to_get("omniglot", root))


def _discover_characters(tree: Path, root: str | Path) -> tuple[list[str], list[str]]:
    """Return character keys "<subset>/<alphabet>/<character>" in sorted order, and the image
    files as keys relative to `tree`, grouped by character in the same order."""
    characters: list[str] = []
    image_files: list[str] = []
    for subset in OMNIGLOT_SUBSETS:
        subset_dir = require_path(tree / subset, f"Omniglot folder {subset}", "omniglot", root)
        for alphabet in sorted(p.name for p in subset_dir.iterdir() if p.is_dir()):
            alphabet_dir = subset_dir / alphabet
            for character in sorted(p.name for p in alphabet_dir.iterdir() if p.is_dir()):
                key = f"{subset}/{alphabet}/{character}"
                drawings = sorted(p.name for p in (tree / key).iterdir() if p.suffix == ".png")
                if not drawings:
                    raise DatasetError(f"Omniglot character folder {tree / key} holds no PNG files",
                                       "the extraction is incomplete; "
                                       + how_to_get("omniglot", root))
                characters.append(key)
                image_files.extend(f"{key}/{drawing}" for drawing in drawings)
    return characters, image_files


def _split_characters(characters: list[str], split: str, split_dir: str | Path | None,
                      split_sizes: Sequence[int], root: str | Path) -> dict[str, list[str]]:
    if split == "maml":
        if len(split_sizes) != 3 or sum(split_sizes) != len(characters):
            raise DatasetError(
                f"found {len(characters)} Omniglot characters but split_sizes {tuple(split_sizes)} "
                f"add up to {sum(split_sizes)} (the full dataset has 1623 = 1100 + 100 + 423)",
                "re-extract both images_background and images_evaluation completely, or pass "
                "split_sizes that add up to the number of characters. "
                + how_to_get("omniglot", root))
        train, validation, _ = split_sizes
        return {"train": characters[:train],
                "validation": characters[train:train + validation],
                "test": characters[train + validation:]}
    if split == "vinyals":
        return {name: _read_vinyals_split(split_dir, name, set(characters)) for name in SPLIT_NAMES}
    raise ValueError(f"unknown Omniglot split {split!r}; use 'maml' or 'vinyals'")


def _read_vinyals_split(split_dir: str | Path | None, split: str,
                        known_characters: set[str]) -> list[str]:
    if split_dir is None:
        raise DatasetError("split='vinyals' needs split_dir",
                           "pass split_dir= a folder with train.json, val.json and test.json in "
                           "torchmeta's Omniglot format "
                           "({\"background\": {alphabet: [characters]}, \"evaluation\": {...}}).")
    path = Path(split_dir) / f"{SPLIT_FILE_STEMS[split]}.json"
    if not path.is_file():
        raise DatasetError(f"Omniglot split file not found: expected {path}",
                           "pass split_dir= the folder holding train.json, val.json and test.json "
                           "of the Vinyals et al. split (torchmeta's omniglot split files).")
    try:
        by_subset = json.loads(path.read_text())
        characters = sorted(f"images_{subset}/{alphabet}/{character}"
                            for subset, alphabets in by_subset.items()
                            for alphabet, names in alphabets.items() for character in names)
    except (ValueError, AttributeError, TypeError) as error:
        raise DatasetError(f"cannot parse Omniglot split file {path}: {error}",
                           "it must be JSON of the form {\"background\": {alphabet: [characters]}, "
                           "\"evaluation\": {...}}; fetch the split file again.") from error
    unknown = [c for c in characters if c not in known_characters]
    if unknown:
        raise DatasetError(f"{path} lists {len(unknown)} characters missing from the data, "
                           f"e.g. {unknown[0]}",
                           "the extracted tree is incomplete, or the split file is for another "
                           "dataset; re-extract both images_background and images_evaluation.")
    return characters
