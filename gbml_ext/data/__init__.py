"""Task sources: the `Task` type, the synthetic task families and the vision datasets' loaders.

Modules of the vision side, one job each:
    datasets   in-memory image classes (`ImageClassDataset`) and split selection
    tasks      the `Task` and `TaskBatch` (a meta-batch as stacked tensors) types
    tensor_sampling  whole N-way K-shot meta-batches in a few tensor ops (`TensorFewShotTasks`)
    sampling   learn2learn's `Taskset`, one task at a time (`FewShotTasks`): the reference
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
from .tasks import Task, TaskBatch, TaskSource, sample_batch
from .tensor_sampling import TensorFewShotTasks

__all__ = [
    "DatasetError",
    "FewShotTasks",
    "ImageClassDataset",
    "LinearRegressionTasks",
    "LogisticRegressionTasks",
    "Task",
    "TaskBatch",
    "TaskSource",
    "TensorFewShotTasks",
    "build_task_sources",
    "canonical_dataset_name",
    "dataset_names",
    "ill_conditioned_covariance",
    "load_cifar_fs",
    "load_fc100",
    "load_mini_imagenet",
    "load_omniglot",
    "sample_batch",
    "synthetic_task_source",
]
