"""Meta-batches as tensors: `TaskBatch`, the tensor sampler (`TensorFewShotTasks`) checked
against learn2learn's `Taskset` (`FewShotTasks`), the synthetic families' vectorised draw, and
the same closed-form meta-gradient from a TaskBatch on every path. The runner on TaskBatches:
test_task_batch_runs.py."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import chi2_contingency, chisquare

import gbml_ext
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
from gbml_ext.data.errors import DatasetError
from gbml_ext.engine import accumulate_meta_gradient
from gbml_ext.fast import batched_meta_gradient

# ------------------------------------------------------------------------- a traceable dataset
# Every image is 3x3 and says which image it is and how it was turned: the centre pixel (which
# no rotation moves) holds the low byte of its index, the four edge midpoints (which rotations
# permute among themselves) the high byte, and of the corners only (0, 0) is marked.
CORNERS = ([0, 0, 2, 2], [0, 2, 0, 2])


def traceable_dataset(counts, quarter_turns=(0,)):
    labels = [c for c, n in enumerate(counts) for _ in range(n)]
    images = np.zeros((len(labels), 3, 3), np.uint8)
    images[:, 1, 1] = np.arange(len(labels)) % 256
    for i, j in [(0, 1), (1, 0), (1, 2), (2, 1)]:
        images[:, i, j] = np.arange(len(labels)) // 256
    images[:, 0, 0] = 255
    return ImageClassDataset(images, labels, [f"c{c}" for c in range(len(counts))],
                             quarter_turns)


def decode(dataset, images):
    """(image index, rotation index) of each drawn image (..., 1, 3, 3)."""
    flat = (images.reshape(-1, 3, 3) * 255).round().long()
    index = flat[:, 1, 1] + 256 * flat[:, 0, 1]
    marks = {r: torch.rot90(torch.tensor([[1, 0, 0], [0, 0, 0], [0, 0, 0]]), k)[CORNERS]
             for r, k in enumerate(dataset.quarter_turns)}
    rotation = torch.full_like(index, -1)
    for r, mark in marks.items():
        rotation[((flat[:, CORNERS[0], CORNERS[1]] == 255) == mark.bool()).all(dim=1)] = r
    assert (rotation >= 0).all()
    return index.reshape(images.shape[:2]), rotation.reshape(images.shape[:2])


def classes_of(dataset, images):
    """The class (base label * R + rotation index) of each drawn image, as ImageClassDataset
    numbers them."""
    index, rotation = decode(dataset, images)
    return dataset.base_labels[index] * len(dataset.quarter_turns) + rotation


# Few classes (ranked random keys) and many classes (redrawn repeats): the two class draws.
DATASETS = {"few classes, rotations": ([6, 7, 8, 9, 6, 7, 8, 9, 6, 7, 8, 9], (0, 1)),
            "many classes": ([6] * 20 + [9] * 20, (0,))}


@pytest.mark.parametrize("name", DATASETS)
def test_drawn_batches_have_the_properties_of_few_shot_tasks(name):
    counts, turns = DATASETS[name]
    dataset = traceable_dataset(counts, turns)
    ways, shots, queries = 5, 2, 3
    batch = TensorFewShotTasks(dataset, ways, shots, queries, seed=1).sample_batch(500)
    assert batch.support_x.shape == (500, ways * shots, 1, 3, 3)
    assert batch.query_x.shape == (500, ways * queries, 1, 3, 3)
    assert batch.support_x.dtype == torch.float32 and batch.support_y.dtype == torch.long
    assert torch.equal(batch.support_y[0], torch.arange(ways).repeat_interleave(shots))
    assert torch.equal(batch.query_y[7], torch.arange(ways).repeat_interleave(queries))
    images = torch.cat([batch.support_x, batch.query_x], dim=1)
    labels = torch.cat([batch.support_y, batch.query_y], dim=1)
    index, rotation = decode(dataset, images)
    classes = dataset.base_labels[index] * len(turns) + rotation
    for t in range(500):
        per_label = [classes[t][labels[t] == j] for j in range(ways)]
        # every image of label j comes from one class, and the classes of a task are distinct
        assert all(len(set(c.tolist())) == 1 for c in per_label)
        assert len({int(c[0]) for c in per_label}) == ways
        # images within a class are distinct (support and query disjoint)
        for j in range(ways):
            assert len(set(index[t][labels[t] == j].tolist())) == shots + queries
    # the split is respected: only this dataset's images, each at its own class
    assert index.max() < len(dataset.base_labels)


def test_drawn_images_equal_the_datasets_own_items():
    """Pixel for pixel what ImageClassDataset[i] (the learn2learn path's item) returns,
    rotation included."""
    dataset = traceable_dataset([5, 6, 7, 5], (0, 1, 2, 3))
    batch = TensorFewShotTasks(dataset, 3, 1, 2, seed=0).sample_batch(40)
    index, rotation = decode(dataset, batch.query_x)
    n = len(dataset.base_labels)
    for t in range(40):
        for i in range(batch.query_x.shape[1]):
            item, label = dataset[int(rotation[t, i]) * n + int(index[t, i])]
            assert torch.equal(batch.query_x[t, i], item)


@pytest.mark.parametrize("name", DATASETS)
def test_class_image_and_label_frequencies_match_learn2learns_taskset(name):
    """Chi-square tests of homogeneity over thousands of tasks: classes, images (per rotation),
    support images and the class behind label 0 are drawn as often by both samplers; and label
    order is uniform (each label equally likely for a given class)."""
    counts, turns = DATASETS[name]
    dataset = traceable_dataset(counts, turns)
    ways, shots, queries, tasks = 5, 1, 1, 3000
    ours = TensorFewShotTasks(dataset, ways, shots, queries, seed=3).sample_batch(tasks)
    reference = FewShotTasks(dataset.meta_dataset(), ways, shots, queries,
                             seed=3).sample_batch(tasks)

    def frequencies(batch):
        classes = classes_of(dataset, batch.support_x)
        index, rotation = decode(dataset, torch.cat([batch.support_x, batch.query_x], dim=1))
        images = rotation * len(dataset.base_labels) + index
        support = images[:, :ways * shots]
        return (torch.bincount(classes.flatten(), minlength=dataset.num_classes),
                torch.bincount(images.flatten(), minlength=len(dataset)),
                torch.bincount(support.flatten(), minlength=len(dataset)),
                torch.bincount(classes[:, 0], minlength=dataset.num_classes), classes)

    mine, theirs = frequencies(ours), frequencies(reference)
    for a, b in zip(mine[:4], theirs[:4], strict=True):
        assert chi2_contingency(np.stack([a.numpy(), b.numpy()])).pvalue > 1e-3
    # uniform classes, and for class 0 a uniform label
    assert chisquare(mine[0].numpy()).pvalue > 1e-3
    label_of_class0 = (mine[4] == 0).nonzero()[:, 1]
    assert chisquare(torch.bincount(label_of_class0, minlength=ways).numpy()).pvalue > 1e-3


def test_generator_state_resumes_the_stream_and_seeds_differ():
    dataset = traceable_dataset([6] * 10)
    source = TensorFewShotTasks(dataset, 3, 1, 2, seed=5)
    source.sample_batch(4)
    state = source.state_dict()
    expected = [source.sample_batch(4).query_x for _ in range(2)]
    resumed = TensorFewShotTasks(dataset, 3, 1, 2, seed=99)
    resumed.load_state_dict(state)
    assert all(torch.equal(resumed.sample_batch(4).query_x, e) for e in expected)
    other = TensorFewShotTasks(dataset, 3, 1, 2, seed=6).sample_batch(4)
    assert not torch.equal(other.query_x, TensorFewShotTasks(dataset, 3, 1, 2, seed=5)
                           .sample_batch(4).query_x)


def test_a_fixed_pool_depends_on_the_seed_alone():
    dataset = traceable_dataset([6] * 10)

    def pool(source):
        return {tuple(decode(dataset, source.sample_batch(50).support_x)[0][t].tolist())
                for t in range(50)}

    first = pool(TensorFewShotTasks(dataset, 3, 1, 1, num_tasks=4, seed=2))
    assert len(first) <= 4 and first == pool(TensorFewShotTasks(dataset, 3, 1, 1, num_tasks=4,
                                                                seed=2))


def test_impossible_tasks_are_a_dataset_error():
    dataset = traceable_dataset([5, 6, 7])
    with pytest.raises(DatasetError, match="4-way tasks but this split has only 3 classes"):
        TensorFewShotTasks(dataset, 4, 1, 1)
    with pytest.raises(DatasetError, match=r"shots\+queries = 6.*'c0' has only 5"):
        TensorFewShotTasks(dataset, 2, 1, 5)


# ----------------------------------------------------------------------------------- TaskBatch

def test_task_batch_views_slices_and_errors():
    tasks = [Task(torch.randn(4, 3), torch.arange(4), torch.randn(6, 3), torch.arange(6) % 4)
             for _ in range(5)]
    batch = TaskBatch.stack(tasks)
    assert len(batch) == 5 and isinstance(batch[1:4], TaskBatch) and len(batch[1:4]) == 3
    for task, view in zip(tasks, batch, strict=True):
        assert torch.equal(task.query_x, view.query_x)
    assert batch[2].support_x.data_ptr() == batch.support_x[2].data_ptr()  # a view, no copy
    assert batch.to("cpu") is batch
    with pytest.raises(ValueError, match="task 1 has support/query shapes"):
        TaskBatch.stack([tasks[0], Task(torch.randn(5, 3), torch.arange(5), torch.randn(6, 3),
                                        torch.arange(6))])
    with pytest.raises(ValueError, match="same leading task axis"):
        TaskBatch(torch.randn(2, 4, 3), torch.zeros(3, 4), torch.randn(2, 6, 3),
                  torch.zeros(2, 6))


@pytest.mark.parametrize("cls", [LinearRegressionTasks, LogisticRegressionTasks])
def test_synthetic_batches_follow_the_task_distribution(cls):
    """One vectorised draw: shapes, a fresh weight per task, and inputs with covariance Σ."""
    source = cls(dim=4, n_support=50, n_query=30, seed=0, condition_number=10.0)
    batch = source.sample_batch(400)
    assert batch.support_x.shape == (400, 50, 4) and batch.query_x.shape == (400, 30, 4)
    inputs = torch.cat([batch.support_x, batch.query_x], dim=1).reshape(-1, 4).double()
    empirical = inputs.T @ inputs / len(inputs)
    assert torch.allclose(empirical, source.covariance.double(), atol=0.02)
    if cls is LinearRegressionTasks:  # targets are w_t·x with a different w_t per task
        w = torch.linalg.lstsq(batch.support_x, batch.support_y).solution
        assert torch.allclose(batch.query_x @ w, batch.query_y, atol=1e-4)
        assert w.squeeze(-1).std(dim=0).min() > 0.5
    one_by_one = cls(dim=4, n_support=50, n_query=30, seed=0, one_at_a_time=True)
    assert torch.equal(one_by_one.sample_batch(2)[1].support_x,
                       (lambda s: (s.sample(), s.sample())[1])(
                           cls(dim=4, n_support=50, n_query=30, seed=0)).support_x)


def test_sample_batch_falls_back_to_sample():
    class OneAtATime:
        def sample(self):
            return Task(torch.zeros(2, 3), torch.zeros(2, 1), torch.ones(4, 3), torch.ones(4, 1))

    assert sample_batch(OneAtATime(), 3).query_x.shape == (3, 4, 3)


# -------------------------------------------------- meta-gradients: a closed form, every path

def closed_form_maml_gradient(w, batch, lr):
    """Mean over tasks of (I - lr H_s)ᵀ ∇L_q(w'), w' = w - lr ∇L_s(w), for y = x·w with mean
    squared error: ∇L(w) = 2/n Xᵀ(Xw - y), H_s = 2/n X_sᵀX_s."""
    total = torch.zeros_like(w)
    for task in batch:
        xs, ys, xq, yq = (t.double() for t in (task.support_x, task.support_y, task.query_x,
                                              task.query_y))
        hs = 2 * xs.T @ xs / len(xs)
        adapted = w - lr * 2 * xs.T @ (xs @ w - ys) / len(xs)
        total += (torch.eye(len(w), dtype=torch.float64) - lr * hs).T @ (
            2 * xq.T @ (xq @ adapted - yq) / len(xq))
    return total / len(batch)


@pytest.mark.parametrize("path", ["per-task list", "per-task batch", "fast list", "fast batch"])
def test_task_batch_gives_the_closed_form_meta_gradient_on_every_path(path):
    torch.manual_seed(0)
    batch = LinearRegressionTasks(dim=5, n_support=12, n_query=9, seed=4).sample_batch(6)
    model = torch.nn.Linear(5, 1, bias=False)
    maml = gbml_ext.MAML(model, lr=0.05)
    expected = closed_form_maml_gradient(model.weight.detach().double().T, batch, 0.05)
    tasks = list(batch) if path.endswith("list") else batch
    meta_gradient = accumulate_meta_gradient if path.startswith("per-task") else \
        batched_meta_gradient
    meta_gradient(maml, tasks, 1)
    assert torch.allclose(model.weight.grad.double().T, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_tensor_sampler_draws_on_the_gpu():
    dataset = traceable_dataset([6] * 10, (0, 1))
    batch = TensorFewShotTasks(dataset, 3, 1, 2, seed=0, device="cuda").sample_batch(8)
    assert all(t.device.type == "cuda" for t in batch.tensors())
    classes = classes_of(dataset, batch.support_x.cpu())
    assert all(len(set(row.tolist())) == 3 for row in classes)
