"""The task API a user calls directly: indexing a `TaskBatch` by a list, tuple, NumPy array,
tensor or boolean mask gives a TaskBatch of those tasks; unsupported indices and task counts
below one are clear errors, for every sampler."""
import numpy as np
import pytest
import torch

from gbml_ext.data import (
    FewShotTasks,
    ImageClassDataset,
    LinearRegressionTasks,
    LogisticRegressionTasks,
    TaskBatch,
    TensorFewShotTasks,
    sample_batch,
)


def numbered_batch(tasks: int = 4) -> TaskBatch:
    """A batch whose every tensor holds its task's number, in different shapes."""
    number = torch.arange(tasks)
    return TaskBatch(number.view(-1, 1, 1).expand(-1, 3, 2).float(),
                     number.view(-1, 1).expand(-1, 3),
                     number.view(-1, 1, 1).expand(-1, 5, 2).float(),
                     number.view(-1, 1).expand(-1, 5))


def numbers(batch: TaskBatch) -> list:
    """Each tensor's task numbers (which must agree) for a TaskBatch."""
    columns = [t.reshape(len(batch), -1)[:, 0].long().tolist() for t in batch.tensors()]
    assert all(c == columns[0] for c in columns), columns
    return columns[0]


@pytest.mark.parametrize("index", [[0, 2], (0, 2), np.array([0, 2]), torch.tensor([0, 2]),
                                   torch.tensor([True, False, True, False]),
                                   np.array([True, False, True, False]), [-4, -2]],
                         ids=["list", "tuple", "numpy", "tensor", "mask", "numpy-mask",
                              "negative"])
def test_a_sequence_of_indices_selects_those_tasks(index):
    picked = numbered_batch()[index]
    assert isinstance(picked, TaskBatch) and numbers(picked) == [0, 2]
    assert picked.support_x.shape == (2, 3, 2) and picked.query_y.shape == (2, 5)


def test_indices_keep_their_order_and_repeats():
    batch = numbered_batch()
    assert numbers(batch[[3, 1, 1]]) == [3, 1, 1]
    assert len(batch[[]]) == 0
    assert batch[np.int64(2)].support_y.tolist() == [2, 2, 2]  # a NumPy int is an int
    assert batch[torch.tensor(1)].query_y.tolist() == [1] * 5  # and so is a 0-d tensor


@pytest.mark.parametrize("index,error,words", [
    (1.5, TypeError, "float"), ("a", TypeError, "str"), ([[0, 1]], TypeError, "2-D"),
    ([0.0, 1.0], TypeError, "integer"), ([0, 9], IndexError, "outside"),
    (torch.tensor([True, False]), IndexError, "mask"), (7, IndexError, "outside"),
])
def test_unsupported_indices_are_clear_errors(index, error, words):
    with pytest.raises(error, match=words):
        numbered_batch()[index]


def _image_dataset() -> ImageClassDataset:
    labels = [c for c in range(4) for _ in range(3)]
    images = np.random.default_rng(0).integers(0, 255, (len(labels), 4, 4), dtype=np.uint8)
    return ImageClassDataset(images, labels, [f"c{c}" for c in range(4)], (0,))


def _samplers():
    dataset = _image_dataset()
    return {
        "linear-regression": LinearRegressionTasks(dim=3, n_support=4, n_query=4),
        "logistic-regression": LogisticRegressionTasks(dim=3, n_support=4, n_query=4),
        "one-at-a-time": LinearRegressionTasks(dim=3, n_support=4, n_query=4,
                                               one_at_a_time=True),
        "tensor": TensorFewShotTasks(dataset, 2, 1, 1, seed=0),
        "learn2learn": FewShotTasks(dataset.meta_dataset(), 2, 1, 1, seed=0),
    }


@pytest.mark.parametrize("name", list(_samplers()))
@pytest.mark.parametrize("count", [0, -1])
def test_sample_batch_of_no_tasks_names_the_number(name, count):
    source = _samplers()[name]
    with pytest.raises(ValueError, match=f"at least one task, got {count}"):
        source.sample_batch(count)
    with pytest.raises(ValueError, match=f"at least one task, got {count}"):
        sample_batch(source, count)
    assert len(source.sample_batch(2)) == 2
    with pytest.raises(TypeError, match="whole number"):
        sample_batch(source, 2.5)
