"""Task sources: the `Task` type, the synthetic task families and the vision datasets' loaders."""
from .cifarfs import load_cifar_fs
from .errors import DatasetError
from .fc100 import load_fc100
from .mini_imagenet import load_mini_imagenet
from .omniglot import load_omniglot
from .synthetic import (LinearRegressionTasks, LogisticRegressionTasks, ill_conditioned_covariance,
                        synthetic_task_source)
from .tasks import Task, TaskSource
from .vision import FewShotTasks, ImageClassDataset, build_task_sources, dataset_names

__all__ = [
    "Task",
    "TaskSource",
    "DatasetError",
    "FewShotTasks",
    "ImageClassDataset",
    "build_task_sources",
    "dataset_names",
    "load_omniglot",
    "load_mini_imagenet",
    "load_cifar_fs",
    "load_fc100",
    "LinearRegressionTasks",
    "LogisticRegressionTasks",
    "ill_conditioned_covariance",
    "synthetic_task_source",
]
