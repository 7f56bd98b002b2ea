import keras

import keras_cnn


def test_macs_count_conv_and_dense_only():
    inputs = keras.Input((10, 10, 4))
    x = keras.layers.Conv2D(8, 3, padding="same")(inputs)  # 10*10*8 * 3*3*4 = 28,800
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Conv2D(8, 3, groups=2, strides=2)(x)  # 4*4*8 * 3*3*4 = 4,608
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)  # 4*4*8 * 9 = 1,152
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(5)(x)  # 40
    assert keras_cnn.count_macs(keras.Model(inputs, x)) == 28_800 + 4_608 + 1_152 + 40


def test_trainable_params_leave_out_bn_moving_statistics():
    model = keras_cnn.ResNet20()
    assert keras_cnn.trainable_params(model) == 269_722
    assert model.count_params() == 271_098  # Keras' total: 269,722 trainable + 1,376 BN moving statistics


def test_macs_of_stochastic_depth_branches_are_counted():
    assert keras_cnn.count_macs(keras_cnn.CifarResNet(depth=20, p_L=0.5)) == keras_cnn.count_macs(keras_cnn.ResNet20())
