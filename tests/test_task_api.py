"""The task API a user calls directly: indexing a `TaskBatch` by a list, tuple, NumPy array,
tensor or boolean mask gives a TaskBatch of those tasks; unsupported indices and task counts
below one are clear errors, for every sampler; inputs and targets of different lengths are
refused when a Task or TaskBatch is built."""
import numpy as np
import pytest
import torch

from gbml_ext.data import (
    FewShotTasks,
    ImageClassDataset,
    LinearRegressionTasks,
    LogisticRegressionTasks,
    Task,
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


@pytest.mark.parametrize("part,lengths", [("support", (5, 4)), ("query", (7, 8))])
def test_a_task_whose_inputs_and_targets_differ_in_length_is_refused(part, lengths):
    n_x, n_y = lengths
    sizes = {"support": (5, 5), "query": (7, 7)}
    sizes[part] = lengths
    (s_x, s_y), (q_x, q_y) = sizes["support"], sizes["query"]
    shapes = rf"\({part}_x \({n_x}, 3\), {part}_y \({n_y},\)\)"
    with pytest.raises(ValueError, match=rf"Task got {n_x} {part} inputs but {n_y} {part} "
                                         rf"targets {shapes}: give every input one target"):
        Task(torch.randn(s_x, 3), torch.zeros(s_y), torch.randn(q_x, 3), torch.zeros(q_y))
    with pytest.raises(ValueError, match=rf"TaskBatch got {n_x} {part} inputs but {n_y} {part}"):
        TaskBatch(torch.randn(2, s_x, 3), torch.zeros(2, s_y), torch.randn(2, q_x, 3),
                  torch.zeros(2, q_y))


def test_targets_without_an_example_axis_are_refused():
    with pytest.raises(ValueError, match=r"Task's support_x and support_y need a leading"):
        Task(torch.tensor(1.0), torch.tensor(0), torch.randn(2, 3), torch.zeros(2))
    with pytest.raises(ValueError, match=r"TaskBatch's query_x and query_y need an example axis"):
        TaskBatch(torch.randn(2, 5, 3), torch.zeros(2, 5), torch.randn(2, 7, 3), torch.zeros(2))


def test_tasks_of_matching_lengths_and_their_views_are_accepted():
    task = Task(torch.randn(5, 3), torch.zeros(5), torch.randn(7, 3), torch.zeros(7, 2))
    assert task.query_y.shape == (7, 2)
    batch = TaskBatch.stack([task, task])
    assert [t.support_x.shape[0] for t in batch] == [5, 5] and len(batch[[1]]) == 1
