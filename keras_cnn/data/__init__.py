"""tf.data sources. The embedded default needs no download: scikit-learn's real handwritten digits."""

from keras_cnn.data.digits import load_digits

__all__ = ["load_digits"]
