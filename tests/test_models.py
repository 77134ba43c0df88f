"""One parametrised smoke test over every model: shapes, gradients reach every parameter, no NaN."""

import pytest
import torch

from lib.losses import vae_loss
from lib.models import (
    EmbeddingNet,
    FeatureClassifier,
    FeatureClassifierConfig,
    LabellingVAE,
    PreActResNet,
    PyramidConfig,
    PyramidTrunk,
    SmallCNN,
    SmallCNNConfig,
    StraightClassifier,
    VAEConfig,
    preact_resnet50,
)


def vae_objective(model, x):
    out = model(x)
    assert out.recon_logits.shape == x.shape
    assert out.mu.shape == out.logvar.shape == out.z.shape == (len(x), model.config.z_dim)
    assert out.class_logits.shape == (len(x), model.config.num_classes)
    return vae_loss(out.recon_logits, x, out.mu, out.logvar, beta=5.0).total + out.class_logits.logsumexp(1).mean()


def classifier_objective(model, x):
    logits = model(x)
    assert logits.shape == (len(x), model.config.num_classes)
    return logits.logsumexp(1).mean()


def embedding_objective(model, x):
    embeddings = model(x)
    assert embeddings.shape == (len(x), model.head.out_features)
    return embeddings.pow(2).sum()


def small_pyramid(**changes):
    return PyramidConfig(**{"backbone": "small", "fpn_channels": 8, "hidden": 16, **changes})


MODELS = {
    "vae-mnist": (lambda: LabellingVAE(VAEConfig(z_dim=3, hidden=(64, 16, 8))), (1, 28, 28), vae_objective),
    "small-cnn-grey": (lambda: SmallCNN(SmallCNNConfig(in_channels=1, num_classes=10, width=4)), (1, 28, 28), classifier_objective),
    "small-cnn-rgb": (lambda: SmallCNN(SmallCNNConfig(in_channels=3, num_classes=7, width=4)), (3, 32, 32), classifier_objective),
    "straight-pyramid-small": (lambda: StraightClassifier(small_pyramid()), (1, 28, 28), classifier_objective),
    "straight-pyramid-resnet50-128": (
        lambda: StraightClassifier(PyramidConfig(backbone="resnet50", input_size=128, fpn_channels=32, hidden=16, num_classes=4)),
        (1, 28, 28), classifier_objective,
    ),
    "embedding-net": (lambda: EmbeddingNet(PyramidTrunk(small_pyramid()), 6), (1, 28, 28), embedding_objective),
    "soc-small": (lambda: FeatureClassifier(FeatureClassifierConfig(width=4, head="soc", num_features=2)), (3, 32, 32), classifier_objective),
    "soc-small-learned-scale": (
        lambda: FeatureClassifier(FeatureClassifierConfig(width=4, head="soc", num_features=3, learn_scale=True)), (3, 32, 32), classifier_objective,
    ),
    "bottleneck-small": (lambda: FeatureClassifier(FeatureClassifierConfig(width=4, head="bottleneck", num_features=2)), (3, 32, 32), classifier_objective),
    "softmax-resnet18-cifar": (
        lambda: FeatureClassifier(FeatureClassifierConfig(encoder="resnet18", head="softmax", num_classes=100)), (3, 32, 32), classifier_objective,
    ),
}


@pytest.mark.parametrize("name", MODELS)
def test_model_shapes_gradients_and_finiteness(name):
    make, shape, objective = MODELS[name]
    torch.manual_seed(0)
    model = make().train()
    x = torch.rand(4, *shape)
    loss = objective(model, x)
    assert torch.isfinite(loss)
    loss.backward()
    for pname, p in model.named_parameters():
        if not p.requires_grad:  # a frozen trunk (EmbeddingNet) must stay without gradients
            assert p.grad is None, f"{name}: frozen {pname} received a gradient"
            continue
        assert p.grad is not None, f"{name}: no gradient reaches {pname}"
        assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient in {pname}"
        assert p.grad.abs().sum() > 0, f"{name}: zero gradient in {pname}"
    features = model.forward_features(x)
    assert features.ndim == 2 and len(features) == 4
    assert model.forward_head(features).shape[0] == 4


def test_vae_eval_mode_is_deterministic_and_uses_the_mean():
    model = LabellingVAE(VAEConfig(z_dim=2, hidden=(16, 8, 4))).eval()
    x = torch.rand(3, 1, 28, 28)
    a, b = model(x), model(x)
    assert torch.equal(a.z, a.mu) and torch.equal(a.recon_logits, b.recon_logits)
    decoded = model.decode(a.mu)
    assert decoded.min() >= 0 and decoded.max() <= 1  # sigmoid output (§3.3)


def test_resnet50_v2_stages_and_pyramid_at_the_papers_resolution():
    backbone = PreActResNet(preact_resnet50(in_channels=1))
    assert 23.4e6 < sum(p.numel() for p in backbone.parameters()) < 23.6e6  # Keras' ResNet50V2 without its top: 23.56 M
    shapes = [tuple(s.shape[1:]) for s in backbone(torch.zeros(1, 1, 128, 128))]
    assert shapes == [(256, 32, 32), (512, 16, 16), (1024, 8, 8), (2048, 4, 4)]
    trunk = PyramidTrunk(PyramidConfig(backbone="resnet50", input_size=128, fpn_channels=256))
    levels = trunk.eval().pyramid(torch.zeros(1, 1, 28, 28))  # 28 x 28 in, resized to 128 inside
    assert [tuple(v.shape[1:]) for v in levels.values()] == [(256, 32, 32), (256, 16, 16), (256, 8, 8), (256, 4, 4), (256, 2, 2)]
    assert trunk.feature_dim == 256 * (16 * 16 + 8 * 8 + 4 * 4 + 2 * 2 + 1)  # each level max-pooled 2 x 2 (ceil)


def test_embedding_net_keeps_its_trunk_frozen_in_train_mode():
    trunk = PyramidTrunk(small_pyramid())
    net = EmbeddingNet(trunk, 4).train()
    assert not net.trunk.training and net.head.training
    before = {k: v.clone() for k, v in net.trunk.state_dict().items()}
    net(torch.rand(8, 1, 28, 28))
    assert all(torch.equal(before[k], v) for k, v in net.trunk.state_dict().items())  # batch-norm statistics unchanged


def test_unknown_backbone_is_refused():
    import pytest

    with pytest.raises(ValueError, match="backbone 'resnet18' is unknown"):
        PyramidConfig(backbone="resnet18")


def test_cifar_resnet18_keeps_the_resolution_in_its_stem():
    model = FeatureClassifier(FeatureClassifierConfig(encoder="resnet18", head="soc", num_features=5))
    assert model.encoder.conv1.kernel_size == (3, 3) and model.encoder.conv1.stride == (1, 1)
    assert isinstance(model.encoder.maxpool, torch.nn.Identity)
    assert model.points(torch.rand(2, 3, 32, 32)).shape == (2, 5)
    assert model.loss(torch.rand(2, 3, 32, 32), torch.tensor([0, 9])).ndim == 0
