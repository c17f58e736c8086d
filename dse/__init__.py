"""dse: design-space exploration for ML systems.

>>> import dse
>>> m = dse.evaluate(workload="llama-3-8b", hardware="h100-sxm", mode="serve", batch=8)
"""
from dse.errors import DSEError, UnknownNameError, UserInputError
from dse.evaluation import Result, evaluate, evaluate_many, evaluate_point

__version__ = "0.1.0"
__all__ = ["DSEError", "Result", "UnknownNameError", "UserInputError", "evaluate", "evaluate_many",
           "evaluate_point"]
