"""FC100 (Oreshkin et al. 2018): CIFAR-100 split by superclass, 12 / 4 / 4 superclasses
(60 / 20 / 20 classes of 600 images), 32x32 RGB, so that test classes are semantically far from
training classes.

Images come from the same per-class folders as CIFAR-FS, `ROOT/cifar100/data/<class_name>/*.png`
(see `gbml_ext.data.cifarfs`). The superclass split is built in (`FC100_SUPERCLASS_SPLIT`, the
split of Oreshkin et al. as distributed with torchmeta) or read from
`split_dir/{train,val,test}.json`, each a JSON list of superclass names.

Citation: B. N. Oreshkin, P. Rodriguez, A. Lacoste. TADAM: Task dependent adaptive metric for
improved few-shot learning. NeurIPS 2018.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from learn2learn.data import MetaDataset

from .cifarfs import load_cifar100_class_folders
from .datasets import SPLIT_FILE_STEMS, SPLIT_NAMES, class_split_dataset
from .errors import DatasetError

__all__ = ["CIFAR100_SUPERCLASSES", "FC100_SUPERCLASS_SPLIT", "load_fc100"]

# CIFAR-100's coarse labels: the folder layout only names the fine classes.
CIFAR100_SUPERCLASSES = {
    "aquatic_mammals": ("beaver", "dolphin", "otter", "seal", "whale"),
    "fish": ("aquarium_fish", "flatfish", "ray", "shark", "trout"),
    "flowers": ("orchid", "poppy", "rose", "sunflower", "tulip"),
    "food_containers": ("bottle", "bowl", "can", "cup", "plate"),
    "fruit_and_vegetables": ("apple", "mushroom", "orange", "pear", "sweet_pepper"),
    "household_electrical_devices": ("clock", "keyboard", "lamp", "telephone", "television"),
    "household_furniture": ("bed", "chair", "couch", "table", "wardrobe"),
    "insects": ("bee", "beetle", "butterfly", "caterpillar", "cockroach"),
    "large_carnivores": ("bear", "leopard", "lion", "tiger", "wolf"),
    "large_man-made_outdoor_things": ("bridge", "castle", "house", "road", "skyscraper"),
    "large_natural_outdoor_scenes": ("cloud", "forest", "mountain", "plain", "sea"),
    "large_omnivores_and_herbivores": ("camel", "cattle", "chimpanzee", "elephant", "kangaroo"),
    "medium_mammals": ("fox", "porcupine", "possum", "raccoon", "skunk"),
    "non-insect_invertebrates": ("crab", "lobster", "snail", "spider", "worm"),
    "people": ("baby", "boy", "girl", "man", "woman"),
    "reptiles": ("crocodile", "dinosaur", "lizard", "snake", "turtle"),
    "small_mammals": ("hamster", "mouse", "rabbit", "shrew", "squirrel"),
    "trees": ("maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"),
    "vehicles_1": ("bicycle", "bus", "motorcycle", "pickup_truck", "train"),
    "vehicles_2": ("lawn_mower", "rocket", "streetcar", "tank", "tractor"),
}

FC100_SUPERCLASS_SPLIT = {
    "train": ("fish", "flowers", "food_containers", "fruit_and_vegetables",
              "household_electrical_devices", "household_furniture",
              "large_man-made_outdoor_things", "large_natural_outdoor_scenes", "reptiles", "trees",
              "vehicles_1", "vehicles_2"),
    "validation": ("large_carnivores", "large_omnivores_and_herbivores", "non-insect_invertebrates",
                   "small_mammals"),
    "test": ("aquatic_mammals", "insects", "medium_mammals", "people"),
}


def load_fc100(root: str | Path, split_dir: str | Path | None = None,
               cache_dir: str | Path | None = None,
               splits: Sequence[str] = SPLIT_NAMES) -> dict[str, MetaDataset]:
    """Load FC100 as one learn2learn `MetaDataset` per split.

    Arguments:
        root: folder holding `cifar100/data/<class_name>/` (or `cifarfs/cifar100/...`).
        split_dir: optional folder with train.json, val.json, test.json (superclass-name lists);
            default: the built-in `FC100_SUPERCLASS_SPLIT`.
        cache_dir: where to keep the decoded-image cache (default: a folder under
            ~/.cache/gbml_ext/cifar100/, shared with CIFAR-FS).
        splits: which of "train", "validation", "test" to return.

    Returns: {split: MetaDataset} with items (image (3, 32, 32) float in [0, 1], label);
        `.dataset.class_names` holds the fine CIFAR-100 class names.

    Example:
        >>> data = load_fc100("data/")  # doctest: +SKIP
        >>> len(data["train"].labels), len(data["test"].labels)  # doctest: +SKIP
        (60, 20)
    """
    superclasses = {split: (FC100_SUPERCLASS_SPLIT[split] if split_dir is None
                            else _read_superclass_list(Path(split_dir), split))
                    for split in splits}
    images, image_classes = load_cifar100_class_folders(root, cache_dir, "fc100")
    return {split: class_split_dataset(images, image_classes,
                                       [fine for coarse in superclasses[split]
                                        for fine in CIFAR100_SUPERCLASSES[coarse]],
                                       (0,), "fc100", root)
            for split in splits}


def _read_superclass_list(split_dir: Path, split: str) -> list[str]:
    path = split_dir / f"{SPLIT_FILE_STEMS[split]}.json"
    fix = ("pass split_dir= a folder with train.json, val.json and test.json, each a JSON list of "
           "CIFAR-100 superclass names (torchmeta's FC100 split files), or leave split_dir=None "
           "for the built-in split.")
    if not path.is_file():
        raise DatasetError(f"FC100 split file not found: expected {path}", fix)
    try:
        names = json.loads(path.read_text())
    except ValueError as error:
        raise DatasetError(f"cannot parse FC100 split file {path}: {error}", fix) from error
    if not isinstance(names, list):
        raise DatasetError(f"{path} should hold a JSON list of superclass names", fix)
    unknown = [name for name in names if name not in CIFAR100_SUPERCLASSES]
    if unknown:
        raise DatasetError(f"{path} names unknown CIFAR-100 superclasses: {unknown[:3]}", fix)
    return names
