"""dse: design-space exploration for ML systems.

>>> import dse
>>> m = dse.evaluate(workload="llama-3-8b", hardware="h100-sxm", mode="serve", batch=8)
"""
from dse.errors import DSEError, UnknownNameError, UserInputError
from dse.evaluation import Result, evaluate, evaluate_many, evaluate_point

__version__ = "0.1.0"
__all__ = ["DSEError", "Result", "UnknownNameError", "UserInputError", "evaluate", "evaluate_many",
           "evaluate_point", "load_study"]


def load_study(path, storage=None):
    """A study file bound to its storage (DESIGN.md 4.4): ``.run(trials=...)`` and ``.front()``.
    `storage` is an Optuna URL or journal path; None means a journal file beside the study file."""
    from dse.study import load_study as load  # Optuna loads only when a study is used

    return load(path, storage)
