"""gbml_ext: gradient-based meta-learning on learn2learn.

MAML and its relatives (`gbml_ext.algorithms.ALGORITHMS` holds every algorithm by its config
name), among them Kronecker-factored meta-optimizers (Meta-KFO), behind one
`clone()` / `adapt(loss)` interface, with deep-linear ("LinNet") heads, for reproducing
Arnold, Iqbal & Sha, "When MAML Can Adapt Fast and How to Assist When It Cannot" (AISTATS 2021).
"""
import contextlib as _contextlib
import io as _io
import sys as _sys

from . import _startup

if _startup.running_command() is not None:
    # First of all: a Ctrl-C while torch loads is then one line in gbml-train & co.
    _startup.install()

if "gym" not in _sys.modules:
    # learn2learn imports gym for its RL helpers; gym 0.26 prints an "unmaintained" notice to
    # stderr on import that has nothing to do with meta-learning and buries real warnings.
    with _contextlib.redirect_stderr(_io.StringIO()):
        try:
            import gym  # noqa: F401
        except ImportError:
            pass

from . import data, engine, fast, nn, optim
from ._version import __version__
from .algorithms import ANIL, GBML, IMAML, MAML, Learn2LearnMAML, MetaLearner, MetaSGD, Reptile
from .data.tasks import Task, TaskBatch
from .engine import TaskOutcome, accumulate_meta_gradient, run_task
from .fast import BatchedPathUnsupported, batched_meta_gradient
from .optim import KroneckerTransform, MetaSGDTransform

__all__ = ["ANIL", "GBML", "IMAML", "MAML", "BatchedPathUnsupported", "KroneckerTransform",
           "Learn2LearnMAML", "MetaLearner", "MetaSGD", "MetaSGDTransform", "Reptile", "Task",
           "TaskBatch", "TaskOutcome", "__version__", "accumulate_meta_gradient",
           "batched_meta_gradient", "data", "engine", "fast", "nn", "optim", "run_task"]
