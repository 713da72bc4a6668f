"""Models: output shapes, the attention layer by hand, identity at init, equal init with and without attention."""

import pytest
import torch
from numpy.testing import assert_allclose

from fedakd.models import BackboneError, FeatureAttention, build_model, num_parameters


@pytest.mark.parametrize(
    "backbone, in_shape, feature_dim",
    [("cnn", (1, 28, 28), 84), ("cnn", (3, 28, 28), 84), ("mlp", (1, 8, 8), 64), ("resnet", (3, 32, 32), 64)],
)
@pytest.mark.parametrize("attention", [False, True])
def test_output_shapes(backbone, in_shape, feature_dim, attention):
    torch.manual_seed(0)
    model = build_model(backbone, in_shape=in_shape, num_classes=7, attention=attention)
    logits, att = model.logits_and_attention(torch.randn(5, *in_shape))
    assert logits.shape == (5, 7)
    assert model(torch.randn(2, *in_shape)).shape == (2, 7)
    assert model.head.in_features == feature_dim
    assert (att is None) if not attention else (att.shape == (5, feature_dim))


def test_auto_picks_backbone_by_image_size():
    assert build_model("auto", in_shape=(1, 28, 28), num_classes=10).head.in_features == 84  # cnn
    assert build_model("auto", in_shape=(1, 8, 8), num_classes=10).head.in_features == 64  # mlp
    resnet = build_model("auto", in_shape=(3, 32, 32), num_classes=10)
    assert any(isinstance(m, torch.nn.GroupNorm) for m in resnet.modules())


def test_simple_cnn_has_niid_bench_size():
    # conv1 1*6*25+6=156, conv2 6*16*25+16=2416, fc 256*120+120=30840, 120*84+84=10164, head 84*10+10=850
    model = build_model("cnn", in_shape=(1, 28, 28), num_classes=10)
    assert num_parameters(model) == 156 + 2416 + 30840 + 10164 + 850
    # attention adds W (84 x 84, no bias)
    assert num_parameters(build_model("cnn", in_shape=(1, 28, 28), num_classes=10, attention=True)) == (
        num_parameters(model) + 84 * 84
    )


def test_backbone_that_does_not_fit_says_which_do():
    with pytest.raises(BackboneError, match=r"'cnn'.*\(1, 8, 8\).*fit: mlp, resnet"):
        build_model("cnn", in_shape=(1, 8, 8), num_classes=10)
    with pytest.raises(BackboneError, match="unknown backbone 'vgg'"):
        build_model("vgg", in_shape=(1, 28, 28), num_classes=10)
    with pytest.raises(BackboneError, match="'auto' has no default for 16x16"):
        build_model("auto", in_shape=(1, 16, 16), num_classes=10)


def test_attention_hand_computed():
    # d = 2, f = [1, 3], W = [[0, 1], [0, 0]]: Wf = [3, 0]; a = softmax([3, 0]) = [e^3, 1] / (e^3 + 1)
    # = [0.9525741, 0.0474259]; h = 2 * a * f = [1.9051483, 2 * 0.0474259 * 3] = [1.9051483, 0.2845552]
    layer = FeatureAttention(2)
    with torch.no_grad():
        layer.weight.weight.copy_(torch.tensor([[0.0, 1.0], [0.0, 0.0]]))
    h, a = layer(torch.tensor([[1.0, 3.0]]))
    assert_allclose(a.detach().numpy(), [[0.9525741, 0.0474259]], rtol=1e-6)
    assert_allclose(h.detach().numpy(), [[1.9051483, 0.2845552]], rtol=1e-6)


@pytest.mark.parametrize("backbone, in_shape", [("mlp", (1, 8, 8)), ("cnn", (1, 28, 28))])
def test_attention_is_identity_at_init_and_init_matches_plain_model(backbone, in_shape):
    torch.manual_seed(3)
    plain = build_model(backbone, in_shape=in_shape, num_classes=10, attention=False)
    torch.manual_seed(3)
    attentive = build_model(backbone, in_shape=in_shape, num_classes=10, attention=True)
    # same backbone and head weights for the same seed
    for (name, p), (name_att, p_att) in zip(
        plain.named_parameters(), [(n, p) for n, p in attentive.named_parameters() if not n.startswith("attention")]
    ):
        assert name == name_att and torch.equal(p, p_att)
    assert torch.count_nonzero(attentive.attention.weight.weight) == 0

    x = torch.randn(6, *in_shape)
    features = attentive.features(x)
    h, a = attentive.attention(features)
    assert_allclose(a.detach().numpy(), 1.0 / features.shape[1], rtol=1e-6)  # uniform
    assert_allclose(h.detach().numpy(), features.detach().numpy(), rtol=1e-6, atol=1e-7)  # h == f
    assert_allclose(attentive(x).detach().numpy(), plain(x).detach().numpy(), rtol=1e-5, atol=1e-6)


def test_gradient_reaches_attention_weights():
    torch.manual_seed(0)
    model = build_model("mlp", in_shape=(1, 8, 8), num_classes=3, attention=True)
    loss = torch.nn.functional.cross_entropy(model(torch.randn(8, 1, 8, 8)), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]))
    loss.backward()
    grad = model.attention.weight.weight.grad
    assert grad is not None and grad.abs().sum() > 0
