"""labkit.inspect: the slides' arithmetic, computed."""
import pytest

from labkit import inspect, models


def test_conv_output_size_valid_cases():
    assert inspect.conv_output_size(7, 3, 0, 1) == 5    # slides: 7x7 input, 3x3 filter, stride 1
    assert inspect.conv_output_size(7, 3, 0, 2) == 3    # stride 2
    assert inspect.conv_output_size(227, 11, 0, 4) == 55  # AlexNet conv1
    assert inspect.conv_output_size(32, 5, 2, 1) == 32  # 'same' padding (F-1)/2
    assert inspect.pool_output_size(55, 3, 0, 2) == 27  # overlapping pooling


def test_conv_output_size_invalid_cases_explain():
    with pytest.raises(ValueError, match=r"\(10 - 3 \+ 2\*0\) / 2 \+ 1 = 4.5 is not an integer"):
        inspect.conv_output_size(10, 3, 0, 2)
    with pytest.raises(ValueError, match="7-wide padded input"):
        inspect.conv_output_size(7, 3, 0, 3)  # 7x7 input, 3x3 filter, stride 3 does not fit either
    with pytest.raises(ValueError, match="does not fit"):
        inspect.conv_output_size(3, 5, 0, 1)
    with pytest.raises(ValueError, match="S must be an integer >= 1"):
        inspect.conv_output_size(7, 3, 0, 0)


def test_alexnet_layer_table_reproduces_the_slides():
    table = inspect.layer_table(models.build("alexnet", num_classes=1000, input_shape=(227, 227, 3)))
    row = table.set_index("layer")
    assert row.loc["conv1", "output_shape"] == (55, 55, 96)
    assert row.loc["conv1", "params"] == 34_944 and row.loc["conv1", "ops"] == 105_705_600
    assert row.loc["fc6", "params"] == 37_752_832 and row.loc["fc6", "ops"] == 37_752_832
    assert row.loc["conv2", "params"] == 614_656 and row.loc["conv2", "ops"] == 614_656 * 27 * 27
    assert row.loc["pool1", "params"] == 0 and row.loc["pool1", "ops"] == 55 * 55 * 96  # one per input value
    assert row.loc["conv1", "memory_bytes"] == 55 * 55 * 96 * 4
    assert row.loc["TOTAL", "params"] == 62_378_344
    assert row.loc["TOTAL", "ops"] == table["ops"].iloc[:-1].sum()


def test_lenet_table_counts_lecuns_connections():
    row = inspect.layer_table(models.build("lenet5", num_classes=10)).set_index("layer")
    # LeCun et al. 1998, section II.B: connections per layer
    assert row.loc["C1", "ops"] == 122_304 and row.loc["S2", "ops"] == 5_880
    assert row.loc["C3", "ops"] == 151_600 and row.loc["S4", "ops"] == 2_000
    assert row.loc["C5", "ops"] == 48_120 and row.loc["F6", "ops"] == 10_164


def test_memory_counts_each_tensor_once_and_budget_adds_up():
    model = models.build("vgg16", num_classes=1000)
    row = inspect.layer_table(model).set_index("layer")
    assert row.loc["conv1_1", "activations"] == 224 * 224 * 64
    assert row.loc["conv1_1_relu", "activations"] == 0  # in place
    assert row.loc["input", "activations"] == 224 * 224 * 3
    params = 138_357_544
    budget = inspect.memory_estimate(model, batch_size=2, optimizer="sgd-momentum")
    assert budget["parameters"] == params * 4 and budget["gradients"] == params * 4
    assert budget["optimizer_state"] == params * 4
    assert budget["activations"] == row.loc["TOTAL", "activations"] * 2 * 4 * 2
    assert budget["total"] == sum(v for k, v in budget.items() if k != "total")
    adam = inspect.memory_estimate(model, optimizer="adam", training=True)
    assert adam["optimizer_state"] == 2 * params * 4
    with pytest.raises(ValueError, match="optimizer must be one of"):
        inspect.memory_estimate(model, optimizer="lbfgs")


def test_receptive_field_and_stacked_convolutions():
    assert inspect.receptive_field([(3, 1)] * 3) == 7
    assert inspect.receptive_field([(3, 1)] * 2) == 5
    assert inspect.receptive_field([(11, 4), (3, 2)]) == 19  # AlexNet conv1 + pool1
    table = inspect.stacked_vs_single(3, 3, channels=64)
    assert list(table["weights_per_C2"]) == [27, 49]
    assert list(table["weights"]) == [27 * 64**2, 49 * 64**2]
    assert list(table["nonlinearities"]) == [3, 1]
    symbolic = inspect.stacked_vs_single()
    assert list(symbolic["weights"]) == ["27C²", "49C²"]


# deck 003's tables, as printed on the slides: (parameters, operations, volume) per listed layer
ALEXNET_SLIDE = [(0, 0, "227x227x3"), (34_944, 105_705_600, "55x55x96"), (0, 290_400, "27x27x96"),
                 (0, 69_984, "27x27x96"), (614_656, 448_084_224, "27x27x256"), (0, 186_624, "13x13x256"),
                 (0, 43_264, "13x13x256"), (885_120, 149_585_280, "13x13x384"), (1_327_488, 224_345_472, "13x13x384"),
                 (884_992, 149_563_648, "13x13x256"), (0, 43_264, "6x6x256"), (37_752_832, 37_752_832, "4,096"),
                 (16_781_312, 16_781_312, "4,096"), (4_097_000, 4_097_000, "1,000"), (0, 1_000, "1,000")]
LENET_SLIDE = [(0, 0, "32x32x1"), (156, 122_304, "28x28x6"), (0, 4_704, "14x14x6"), (2_416, 241_600, "10x10x16"),
               (0, 1_600, "5x5x16"), (48_120, 48_120, "1x1x120"), (10_164, 10_164, "84"), (850, 850, "10"),
               (0, 10, "10")]
# conv1_1's operations are printed "89,915,390" on the slide: 224 x 224 x 64 x (27 + 1) = 89,915,392
VGG16_SLIDE = [(0, 0, "224x224x3"), (1_792, 89_915_392, "224x224x64"), (36_928, 1_852_899_328, "224x224x64"),
               (0, 3_211_264, "112x112x64"), (73_856, 926_449_664, "112x112x128"),
               (147_584, 1_851_293_696, "112x112x128"), (0, 1_605_632, "56x56x128"),
               (295_168, 925_646_848, "56x56x256"), (590_080, 1_850_490_880, "56x56x256"),
               (590_080, 1_850_490_880, "56x56x256"), (0, 802_816, "28x28x256"),
               (1_180_160, 925_245_440, "28x28x512"), (2_359_808, 1_850_089_472, "28x28x512"),
               (2_359_808, 1_850_089_472, "28x28x512"), (0, 401_408, "14x14x512"),
               (2_359_808, 462_522_368, "14x14x512"), (2_359_808, 462_522_368, "14x14x512"),
               (2_359_808, 462_522_368, "14x14x512"), (0, 100_352, "7x7x512"), (102_764_544, 102_764_544, "4,096"),
               (16_781_312, 16_781_312, "4,096"), (4_097_000, 4_097_000, "1,000"), (0, 1_000, "1,000")]


@pytest.mark.parametrize("name, options, expected", [
    ("alexnet", {"num_classes": 1000}, ALEXNET_SLIDE),
    ("lenet5", {"num_classes": 10, "form": "modern"}, LENET_SLIDE),
    ("vgg16", {"num_classes": 1000}, VGG16_SLIDE)], ids=["alexnet", "lenet5", "vgg16"])
def test_slide_table_reproduces_deck_003(name, options, expected):
    table = inspect.slide_table(models.build(name, **options))
    assert list(zip(table["parameters"], table["operations"], table["volume"])) == expected


def test_gradient_norms_match_the_analytic_gradient_and_leave_the_model_as_it_was():
    import keras
    import numpy as np

    inputs = keras.Input((4,))
    x = keras.layers.BatchNormalization()(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    rng = np.random.default_rng(0)
    model.layers[-1].set_weights([rng.normal(size=(4, 3)).astype("float32"), np.zeros(3, "float32")])
    images, labels = rng.normal(size=(8, 4)).astype("float32"), np.array([0, 1, 2, 0, 1, 2, 0, 1])
    before = [keras.ops.convert_to_numpy(v) for v in model.non_trainable_variables]
    table = inspect.gradient_norms(model, images, labels)
    # cross-entropy of a softmax: dL/dW = x^T (p - y) / batch, x the batch-normalised input (training mode)
    normed = (images - images.mean(0)) / np.sqrt(images.var(0) + 1e-3)
    logits = normed @ keras.ops.convert_to_numpy(model.layers[-1].kernel)
    p = np.exp(logits - logits.max(1, keepdims=True)); p /= p.sum(1, keepdims=True)
    expected = normed.T @ (p - np.eye(3)[labels]) / len(labels)
    assert list(table["depth"]) == [1] and table["layer"].item() == model.layers[-1].name
    assert table["gradient_norm"].item() == pytest.approx(np.linalg.norm(expected), rel=1e-4)
    after = [keras.ops.convert_to_numpy(v) for v in model.non_trainable_variables]
    assert all(np.array_equal(a, b) for a, b in zip(before, after)), "the moving statistics must not change"
