"""The models composed per mode (DESIGN.md section 2): infer, serve and train each in a module of its
own, over the `Setup` shared by all, with the input pipeline and the serving SLOs on top."""
from dse.modes.infer import infer
from dse.modes.pipeline import with_data_pipeline
from dse.modes.serve import serve, service_levels
from dse.modes.setup import Setup, common, setup
from dse.modes.train import train

MODELS = {"infer": infer, "serve": serve, "train": train}

__all__ = ["MODELS", "Setup", "common", "service_levels", "setup", "with_data_pipeline"]
