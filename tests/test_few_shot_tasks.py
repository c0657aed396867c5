"""FewShotTasks, the sampler over a class-split dataset: task shapes and labels, support and
query that never share an image, a private seed that resumes, transforms, a fixed task pool,
and impossible ways or shots refused in one line."""
import random

import numpy as np
import pytest
import torch

from gbml_ext.data import DatasetError, FewShotTasks, ImageClassDataset
from vision_fixtures import assert_task


def small_dataset(classes=6, per_class=5):
    images = np.arange(classes * per_class, dtype=np.uint8).repeat(4).reshape(-1, 2, 2)
    labels = [i // per_class for i in range(classes * per_class)]
    return ImageClassDataset(images, labels, [f"class{c}" for c in range(classes)]).meta_dataset()


def test_few_shot_tasks_shapes_labels_and_disjoint_support_query():
    source = FewShotTasks(small_dataset(), ways=3, shots=2, queries=3)
    for _ in range(5):
        task = source.sample()
        assert_task(task, 3, 2, 3, (1, 2, 2))
        # Pixel value identifies the image: support and query never share one, and each label
        # maps to a single source class in both.
        support_ids = (task.support_x[:, 0, 0, 0] * 255).round().long()
        query_ids = (task.query_x[:, 0, 0, 0] * 255).round().long()
        assert not set(support_ids.tolist()) & set(query_ids.tolist())
        for label in range(3):
            classes = torch.cat([support_ids[task.support_y == label],
                                 query_ids[task.query_y == label]]) // 5
            assert classes.unique().numel() == 1


def test_few_shot_tasks_seed_is_private_and_resumable():
    def draw(source, count):
        return [source.sample().support_x for _ in range(count)]
    reference = draw(FewShotTasks(small_dataset(), 3, 1, 1, seed=7), 4)
    random.seed(123)
    source = FewShotTasks(small_dataset(), 3, 1, 1, seed=7)
    first_two = draw(source, 2)
    state = source.state_dict()
    random.random()  # global RNG activity must not disturb a seeded source
    resumed = FewShotTasks(small_dataset(), 3, 1, 1, seed=99)
    resumed.load_state_dict(state)
    assert all(torch.equal(a, b)
               for a, b in zip(reference, first_two + draw(resumed, 2), strict=True))


def test_few_shot_tasks_transforms_and_fixed_task_pool():
    source = FewShotTasks(small_dataset(), 2, 1, 1, num_tasks=3,
                          transforms=lambda image: image * 0 + 0.5, seed=0)
    assert torch.all(source.sample().support_x == 0.5)

    def pool(source):
        return {tuple(source.sample().support_x.flatten().tolist()) for _ in range(40)}
    first = pool(FewShotTasks(small_dataset(), 2, 1, 1, num_tasks=3, seed=5))
    random.seed(1)
    resumed = FewShotTasks(small_dataset(), 2, 1, 1, num_tasks=3, seed=5)
    resumed.load_state_dict({"random_state": random.Random(77).getstate()})
    assert len(first) <= 3 and pool(resumed) == first  # the pool depends on the seed alone


def test_impossible_ways_or_shots_raise_dataset_error():
    with pytest.raises(DatasetError,
                       match="7-way tasks but this split has only 6 classes") as error:
        FewShotTasks(small_dataset(), ways=7, shots=1, queries=1)
    assert "ways <= 6" in str(error.value)
    with pytest.raises(DatasetError, match=r"shots\+queries = 6.*'class0' has only 5") as error:
        FewShotTasks(small_dataset(), ways=2, shots=1, queries=5)
    assert "lower shots or queries" in str(error.value)
