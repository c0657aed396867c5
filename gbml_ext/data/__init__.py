"""Task sources: the `Task` type, the synthetic task families and the vision datasets' loaders.

Modules of the vision side, one job each:
    datasets   in-memory image classes (`ImageClassDataset`) and split selection
    sampling   N-way K-shot task sampling (`FewShotTasks`) with an optional private seed
    images     image decoding with a `.npz` cache keyed by the source files' size and mtime
    archives   extracting a .tar.gz once into the cache folder
    cache      where caches live (~/.cache/gbml_ext/<dataset>/ or cache_dir) and announcing them
    registry   dataset name -> loader, `build_task_sources`, `dataset_names`
    omniglot, mini_imagenet, cifarfs, fc100: each dataset's on-disk layout and splits
"""
from .cifarfs import load_cifar_fs
from .datasets import ImageClassDataset
from .errors import DatasetError
from .fc100 import load_fc100
from .mini_imagenet import load_mini_imagenet
from .omniglot import load_omniglot
from .registry import build_task_sources, canonical_dataset_name, dataset_names
from .sampling import FewShotTasks
from .synthetic import (
    LinearRegressionTasks,
    LogisticRegressionTasks,
    ill_conditioned_covariance,
    synthetic_task_source,
)
from .tasks import Task, TaskSource

__all__ = [
    "DatasetError",
    "FewShotTasks",
    "ImageClassDataset",
    "LinearRegressionTasks",
    "LogisticRegressionTasks",
    "Task",
    "TaskSource",
    "build_task_sources",
    "canonical_dataset_name",
    "dataset_names",
    "ill_conditioned_covariance",
    "load_cifar_fs",
    "load_fc100",
    "load_mini_imagenet",
    "load_omniglot",
    "synthetic_task_source",
]
