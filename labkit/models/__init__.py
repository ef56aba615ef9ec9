"""Keras builders for the course's architectures, one short module per family.

    build("resnet50", num_classes=17, input_shape=(224, 224, 3), version=2)
    available()  # ['lenet5', 'alexnet', 'vgg11', ..., 'resnet152']
    build("resnet50", num_classes=17, weights="imagenet")   # ImageNet backbone, new classifier
    preprocess("resnet50")                                  # the input scaling those weights expect
    with shapes_only():                                     # to count, without drawing any weights
        net = build("efficientnetb7", num_classes=1000)

Options each family takes (passed through ``build``):
    lenet5     form="original" | "modern"
    alexnet    two_gpu=False, lrn=True, dropout=0.5
    vgg*       batch_norm=False, config= (e.g. "A-LRN" for vgg11, "C" for vgg16), dropout=0.5
    googlenet  aux_classifiers=False, batch_norm=False, lrn=True, dropout=0.4
    resnet*    version=1 | 2, se_ratio= (SE-ResNet: squeeze-and-excitation in every block),
               zero_init_residual=True, kernel_initializer="he_normal" ("glorot_uniform" and
               zero_init_residual=False: Keras' defaults)
    seresnet*  ResNet v1 with squeeze-and-excitation (r = 16) in every block (Hu et al. 2018)
    resnext50  config="50_32x4d"; resnext101 config="101_32x8d" (or "101_32x4d", "101_64x4d")
    densenet121, densenet169, densenet201, densenet161
    efficientnetb0 .. efficientnetb7  (B0 and its compound scaling; input: the variant's resolution)
    cifarresnet  depth=20 (6n + 2), residual=True (False: the plain network), for the
               degradation experiment (He et al. 2016, section 4.2)
    cifarhighway depth=20, gate_bias=-1.0: the same network with highway blocks (lab 09)
"""
from __future__ import annotations

import contextlib
import functools

import keras

from labkit.models import alexnet as _alexnet
from labkit.models import cifar_resnet as _cifar_resnet
from labkit.models import densenet as _densenet
from labkit.models import efficientnet as _efficientnet
from labkit.models import googlenet as _googlenet
from labkit.models import highway as _highway
from labkit.models import lenet as _lenet
from labkit.models import pretrained
from labkit.models import resnet as _resnet
from labkit.models import resnext as _resnext
from labkit.models import vgg as _vgg
from labkit.models.port import port_weights
from labkit.models.pretrained import MissingWeightsError
from labkit.models.transfer import copy_up_to, freeze_batch_norm, freeze_up_to, layers_up_to

_VGG_CONFIG = {"vgg11": "A", "vgg13": "B", "vgg16": "D", "vgg19": "E"}
_VGG_ALLOWED = {"vgg11": ("A", "A-LRN"), "vgg13": ("B",), "vgg16": ("C", "D"), "vgg19": ("E",)}


def _vgg_builder(name):
    def build_vgg(num_classes, input_shape, config=None, **options):
        config = config or _VGG_CONFIG[name]
        if config not in _VGG_ALLOWED[name]:
            raise ValueError(f"{name} has configuration(s) {', '.join(_VGG_ALLOWED[name])}, not {config!r}")
        return _vgg.vgg(config, num_classes=num_classes, input_shape=input_shape, **options)
    return build_vgg


def _resnet_builder(depth):
    return lambda num_classes, input_shape, **options: _resnet.resnet(
        depth, num_classes=num_classes, input_shape=input_shape, **options)


def _se_resnet_builder(depth):
    return lambda num_classes, input_shape, **options: _resnet.resnet(
        depth, num_classes=num_classes, input_shape=input_shape, se_ratio=options.pop("se_ratio", 16), **options)


def _resnext_builder(depth, default):
    def build_resnext(num_classes, input_shape, config=default, **options):
        if not config.startswith(f"{depth}_"):
            raise ValueError(f"resnext{depth} has configurations "
                             f"{', '.join(c for c in _resnext.CONFIGS if c.startswith(f'{depth}_'))}, not {config!r}")
        return _resnext.resnext(config, num_classes=num_classes, input_shape=input_shape, **options)
    return build_resnext


def _densenet_builder(depth):
    return lambda num_classes, input_shape, **options: _densenet.densenet(
        depth, num_classes=num_classes, input_shape=input_shape, **options)


def _efficientnet_builder(variant):
    return lambda num_classes, input_shape, **options: _efficientnet.efficientnet(
        variant, num_classes=num_classes, input_shape=input_shape, **options)


# name: (builder(num_classes, input_shape, **options), paper input shape, minimum input side)
REGISTRY = {
    "lenet5": (_lenet.lenet5, (32, 32, 1), _lenet.MIN_INPUT_SIZE),
    "alexnet": (_alexnet.alexnet, (227, 227, 3), _alexnet.MIN_INPUT_SIZE),
    **{name: (_vgg_builder(name), (224, 224, 3), _vgg.MIN_INPUT_SIZE) for name in _VGG_CONFIG},
    "googlenet": (_googlenet.googlenet, (224, 224, 3), _googlenet.MIN_INPUT_SIZE),
    **{f"resnet{d}": (_resnet_builder(d), (224, 224, 3), _resnet.MIN_INPUT_SIZE) for d in _resnet.DEPTHS},
    "cifarresnet": (_cifar_resnet.cifar_resnet, (32, 32, 3), _cifar_resnet.MIN_INPUT_SIZE),
    "cifarhighway": (_highway.cifar_highway, (32, 32, 3), _cifar_resnet.MIN_INPUT_SIZE),
    # beyond the four lab architectures (lab 09)
    **{f"seresnet{d}": (_se_resnet_builder(d), (224, 224, 3), _resnet.MIN_INPUT_SIZE) for d in _resnet.DEPTHS},
    "resnext50": (_resnext_builder(50, "50_32x4d"), (224, 224, 3), _resnext.MIN_INPUT_SIZE),
    "resnext101": (_resnext_builder(101, "101_32x8d"), (224, 224, 3), _resnext.MIN_INPUT_SIZE),
    **{f"densenet{d}": (_densenet_builder(d), (224, 224, 3), _densenet.MIN_INPUT_SIZE) for d in _densenet.CONFIGS},
    **{f"efficientnet{v}": (_efficientnet_builder(v), (r, r, 3), _efficientnet.MIN_INPUT_SIZE)
       for v, (_, _, r, _) in _efficientnet.SCALED.items()},
}
# built for one experiment (lab 05's degradation), not one of the course's ImageNet architectures
EXPERIMENT_ONLY = ("cifarresnet", "cifarhighway")
# lab 09's families: lab 07's comparison lists them once they have been trained
BEYOND_THE_LABS = tuple(name for name in REGISTRY if name.startswith(("seresnet", "resnext", "densenet", "efficientnet")))


def available() -> list[str]:
    """Names ``build`` accepts."""
    return list(REGISTRY)


def _entry(name: str):
    key = name.strip().lower().replace("-", "").replace("_", "")
    if key not in REGISTRY:
        raise ValueError(f"Unknown model {name!r}. Available: {', '.join(REGISTRY)}.")
    return key, REGISTRY[key]


def paper_input_shape(name: str) -> tuple:
    """The input shape the paper used (AlexNet 227x227x3, LeNet-5 32x32x1, the rest 224x224x3)."""
    return _entry(name)[1][1]


def min_input_size(name: str) -> int:
    """The smallest square input side the architecture accepts."""
    return _entry(name)[1][2]


def build(name: str, num_classes: int = 17, input_shape=None, weights: str | None = None,
          **options) -> keras.Model:
    """Build architecture ``name`` (see ``available()``) with the paper's input shape unless
    ``input_shape`` is given. Raises ``ValueError`` for unknown names, bad options or inputs
    smaller than ``min_input_size(name)``.

    ``weights="imagenet"`` loads Keras' published ImageNet weights (VGG-16/19, ResNet-50/101/152;
    see ``labkit.models.pretrained``): the whole network at 1000 classes and 224 px, else the
    backbone with a new classifier. Without the file and without internet it raises
    ``MissingWeightsError`` naming the file and the folder to put it in. Feed such a model
    ``preprocess(name)``'s input."""
    key, (builder, paper_shape, _) = _entry(name)
    shape = tuple(input_shape) if input_shape is not None else paper_shape
    if weights not in (None, "imagenet"):
        raise ValueError(f"weights must be None (random initialisation) or 'imagenet', got {weights!r}. "
                         "To start from a labkit run, use train(..., init='outputs/<run>/best.keras').")
    if weights == "imagenet":
        pretrained.published(key, options)  # no weights for it: say so before building anything
    try:
        model = builder(num_classes=num_classes, input_shape=shape, **options)
    except TypeError as err:  # an option this family does not take
        raise ValueError(f"{key}: {err}. See help(labkit.models) for each family's options.") from err
    if weights == "imagenet":
        pretrained.load_imagenet(model, key, options)
    return model


def preprocess(name: str, input_range: float = 255.0) -> keras.layers.Layer:
    """The input scaling ``name``'s ImageNet weights expect, as a Keras layer (Caffe's BGR mean
    subtraction for VGG and ResNet v1); ``input_range`` is the value of white in its input."""
    return pretrained.preprocess(_entry(name)[0], input_range)


def has_imagenet_weights(name: str, **options) -> bool:
    """Whether Keras publishes ImageNet weights that ``build(name, weights="imagenet", **options)`` loads."""
    try:
        pretrained.published(_entry(name)[0], options)
    except ValueError:
        return False
    return True


def inference_model(model: keras.Model) -> keras.Model:
    """The model with only its main output (drops GoogLeNet's training-only auxiliary heads);
    weights are shared, not copied."""
    if len(model.outputs) == 1:
        return model
    main = model.get_layer("predictions").output
    return keras.Model(model.inputs, main, name=model.name.removesuffix("_aux"))


@contextlib.contextmanager
def shapes_only():
    """Networks built inside this block have their layers and weight shapes but no weight values
    (Keras' ``StatelessScope``): enough for ``count_trainable`` and ``labkit.inspect``, and several
    times faster (VGG-16: 25x, EfficientNet-B7: 4.5x). They cannot be called or trained. Leaving
    the block clears the Keras session, and with it the weights never drawn."""
    try:
        with keras.StatelessScope(initialize_variables=False):
            yield
    finally:
        keras.backend.clear_session()


def count_trainable(model: keras.Model) -> int:
    """Trainable parameters, as the papers and torchvision count them."""
    return int(sum(functools.reduce(lambda a, b: a * b, w.shape, 1) for w in model.trainable_weights))


def count_parameters(model: keras.Model) -> int:
    """The network's parameters as the papers count them, frozen ones included: every weight
    except batch norm's moving mean and variance (equal to ``count_trainable`` until layers are
    frozen)."""
    return int(sum(functools.reduce(lambda a, b: a * b, w.shape, 1) for w in model.weights
                   if not w.path.endswith(("moving_mean", "moving_variance"))))


def count_all(model: keras.Model) -> int:
    """Keras' ``count_params()``: also batch norm's moving mean and variance."""
    return int(model.count_params())
