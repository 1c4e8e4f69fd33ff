"""Offline stand-ins for the tutorials' downloaded data: same shapes, learnable, deterministic.

No network here, so ``datasets.MNIST(...)`` (tutorial part 6) and the sandbox's Boston housing
data (part 7) are replaced by synthetic tensors a model can learn. Everything is drawn from a
private generator, so the data does not depend on (or disturb) the scripts' own seeds.
"""

import torch
from torch.utils.data import TensorDataset

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def _mnist_templates(generator):
    """One fixed 28x28 'digit' per class: a few bright random strokes on a dark background."""
    templates = torch.zeros(10, 28, 28)
    for digit in range(10):
        for _ in range(4):
            row, col = torch.randint(4, 24, (2,), generator=generator).tolist()
            length = int(torch.randint(6, 14, (1,), generator=generator))
            if torch.rand(1, generator=generator) < 0.5:
                templates[digit, row:row + 2, max(col - length // 2, 0):col + length // 2] = 1.0
            else:
                templates[digit, max(row - length // 2, 0):row + length // 2, col:col + 2] = 1.0
    return templates


def synthetic_mnist(train=True, size=None, noise=0.6):
    """MNIST-shaped samples (1x28x28 float images, already ``ToTensor()`` + ``Normalize``d as
    in the tutorial, and int64 labels 0-9): each class is its template, randomly shifted by a
    pixel or two, plus strong Gaussian noise, so a CNN needs a few epochs to learn it."""
    templates = _mnist_templates(torch.Generator().manual_seed(2024))
    generator = torch.Generator().manual_seed(1 if train else 2)
    size = size or (60000 if train else 10000)
    labels = torch.randint(0, 10, (size,), generator=generator)
    images = templates[labels]
    shifts = torch.randint(-2, 3, (size, 2), generator=generator)
    for shift in shifts.unique(dim=0):
        rows = (shifts == shift).all(dim=1)
        images[rows] = torch.roll(images[rows], shifts=tuple(shift.tolist()), dims=(1, 2))
    images = (images + noise * torch.randn(images.shape, generator=generator)).clamp(0, 1)
    images = ((images - MNIST_MEAN) / MNIST_STD).unsqueeze(1)
    return TensorDataset(images, labels)


def synthetic_boston(samples=506, features=13, noise=2.0):
    """Boston-housing-shaped data: 506 x 13 standardized features and a median price (in
    $1000s, around 22) that is a fixed linear function of them plus noise."""
    generator = torch.Generator().manual_seed(506)
    data = torch.randn(samples, features, generator=generator)
    weights = 3 * torch.randn(features, generator=generator)
    target = 22.5 + data @ weights + noise * torch.randn(samples, generator=generator)
    return data, target
