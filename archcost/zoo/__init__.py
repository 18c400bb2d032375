"""The zoo: one file per family. Importing this package registers every model."""

from . import alexnet, densenet, googlenet, lenet, mobilenet, resnet, senet, vgg, xception  # noqa: F401
from .registry import ModelSpec, get_model, get_spec, list_models, register_model  # noqa: F401
