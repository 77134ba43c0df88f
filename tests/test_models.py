"""One parametrised smoke test over every model: shapes, gradients reach every parameter, no NaN."""

import pytest
import torch

from lib.losses import vae_loss
from lib.models import LabellingVAE, SmallCNN, SmallCNNConfig, VAEConfig


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


MODELS = {
    "vae-mnist": (lambda: LabellingVAE(VAEConfig(z_dim=3, hidden=(64, 16, 8))), (1, 28, 28), vae_objective),
    "small-cnn-grey": (lambda: SmallCNN(SmallCNNConfig(in_channels=1, num_classes=10, width=4)), (1, 28, 28), classifier_objective),
    "small-cnn-rgb": (lambda: SmallCNN(SmallCNNConfig(in_channels=3, num_classes=7, width=4)), (3, 32, 32), classifier_objective),
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
