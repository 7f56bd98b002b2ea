"""tf.data sources. The embedded default needs no download: scikit-learn's real handwritten digits."""

from keras_cnn.data.cifar import load_cifar_archive
from keras_cnn.data.digits import digits_arrays, load_digits
from keras_cnn.data.sources import DATASETS, Splits, load_dataset, pipeline

__all__ = ["DATASETS", "Splits", "digits_arrays", "load_cifar_archive", "load_dataset", "load_digits", "pipeline"]
