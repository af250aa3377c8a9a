"""The seed's own loops (sections 2.1 and 2.2), in plain Python floats, as the reference for our runs."""

X = [1.0, 2.0, 3.0]
Y = [2.0, 4.0, 6.0]


def gradient_descent(epochs=100, lr=0.01, w=1.0):
    """Section 2.1: w -= lr * 2/N sum x (x w - y), once per epoch. Returns w after every epoch."""
    path = []
    for _ in range(epochs):
        grad = sum(2 * x * (x * w - y) for x, y in zip(X, Y)) / len(X)
        w -= lr * grad
        path.append(w)
    return path


def stochastic_gradient_descent(epochs=100, lr=0.01, w=1.0):
    """Section 2.2 as meant: one update per sample, samples in order. Returns w after every step."""
    path = []
    for _ in range(epochs):
        for x, y in zip(X, Y):
            w -= lr * 2 * x * (x * w - y)
            path.append(w)
    return path


def cost(w):
    return sum((x * w - y) ** 2 for x, y in zip(X, Y)) / len(X)


def autograd_walk(epochs=1, lr=0.01, dtype=None):
    """Section 3.3's program as written: torch tensors, l.backward(), w.data -= lr * w.grad. Returns the
    printed (x, y, w.grad) of every sample and (epoch, l) of every epoch."""
    import torch

    w = torch.tensor([1.0], dtype=dtype or torch.float32, requires_grad=True)
    grads, progress = [], []
    for epoch in range(epochs):
        for x, y in zip(X, Y):
            l = (x * w - y) ** 2  # noqa: E741 (the course's name)
            l.backward()
            grads.append((x, y, w.grad.item()))
            w.data = w.data - lr * w.grad.data
            w.grad.data.zero_()
        progress.append((epoch, l.item()))
    return grads, progress
