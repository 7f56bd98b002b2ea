"""tf.data sources. The embedded data need no download: scikit-learn's real handwritten digits and sample photos."""

from keras_cnn.data.cifar import load_cifar_archive
from keras_cnn.data.digits import digits_arrays, load_digits, photo_arrays
from keras_cnn.data.sources import DATASETS, Splits, load_dataset, pipeline

__all__ = [
    "DATASETS",
    "Splits",
    "digits_arrays",
    "load_cifar_archive",
    "load_dataset",
    "load_digits",
    "photo_arrays",
    "pipeline",
]
