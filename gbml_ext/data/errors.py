"""The one exception the vision loaders raise for missing, incomplete or corrupted data.

Every `DatasetError` carries two parts: what is wrong (with the path or the numbers involved)
and how to fix it (which files to fetch and where to put them). Nothing in `gbml_ext.data`
downloads anything, so the fix always tells the user what to do by hand.
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["DatasetError", "how_to_get", "require_path"]


class DatasetError(RuntimeError):
    """Raised when a dataset on disk is missing, incomplete, corrupted, or too small for a request.

    Arguments:
        problem: what is wrong, naming the path or numbers involved.
        fix: what the user should do about it.

    Example:
        >>> err = DatasetError("no folder /data/omniglot-py", how_to_get("omniglot", "/data"))
        >>> "omniglot-py" in str(err) and "Fix:" in str(err)
        True
    """

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(f"{problem}\nFix: {fix}")
        self.problem = problem
        self.fix = fix


# Kept together so that every loader words the "where do I get it" advice the same way.
_ACQUISITION_HINTS = {
    "omniglot": (
        "download images_background.zip and images_evaluation.zip from the official omniglot "
        "repo (github.com/brendenlake/omniglot, folder python/) and unzip both into "
        "{root}/omniglot-py/, giving {root}/omniglot-py/images_background/<alphabet>/"
        "characterNN/*.png and {root}/omniglot-py/images_evaluation/...; or pass a .tar.gz "
        "of the omniglot-py folder as root."
    ),
    "mini-imagenet": (
        "put learn2learn's pickles mini-imagenet-cache-train.pkl, "
        "mini-imagenet-cache-validation.pkl and mini-imagenet-cache-test.pkl in {root}/; "
        "or use the Ravi & Larochelle layout: {root}/train.csv, {root}/val.csv, {root}/test.csv "
        "(columns filename,label) with the JPEGs in {root}/images/<filename>."
    ),
    "cifar-fs": (
        "use learn2learn's CIFAR-FS layout: one folder of PNGs per CIFAR-100 class in "
        "{root}/cifar100/data/<class_name>/*.png and the Bertinetto et al. class lists "
        "{root}/cifar100/splits/bertinetto/{{train,val,test}}.txt (one class name per line); "
        "this is what unzipping learn2learn's cifarfs.zip into {root}/ gives."
    ),
    "fc100": (
        "use the CIFAR-100 per-class layout {root}/cifar100/data/<class_name>/*.png (as for "
        "CIFAR-FS: unzip learn2learn's cifarfs.zip into {root}/); the superclass split comes "
        "built in, or from split_dir/{{train,val,test}}.json (lists of superclass names)."
    ),
}


def how_to_get(dataset: str, root: str | Path) -> str:
    """Return the "how to get this dataset onto disk" advice for `dataset`, with `root` filled in.

    Arguments:
        dataset: one of "omniglot", "mini-imagenet", "cifar-fs", "fc100".
        root: the folder the loader was pointed at.

    Example:
        >>> "images_background.zip" in how_to_get("omniglot", "/data")
        True
    """
    return _ACQUISITION_HINTS[dataset].format(root=str(root).rstrip("/") or "/")


def require_path(path: Path, what: str, dataset: str, root: str | Path) -> Path:
    """Return `path` if it exists, else raise a `DatasetError` naming it and how to get the data.

    Arguments:
        path: the file or folder that must exist.
        what: how to call it in the error, e.g. "Omniglot root".
        dataset, root: passed to `how_to_get` for the fix.

    Example:
        >>> require_path(Path("/"), "root", "omniglot", "/")
        PosixPath('/')
    """
    if not path.exists():
        raise DatasetError(f"{what} not found: expected {path}", how_to_get(dataset, root))
    return path
