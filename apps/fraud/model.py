"""Fraud model code (tenant side): a small MLP over the preprocessed feature matrix.

The platform's training plane imports ``build_model`` from this file; everything about
encoding features lives in the platform's ``Preprocessor``, so this file only shapes the net.

Example:
    >>> import torch
    >>> model = build_model(input_width=12, hidden_units=16)
    >>> model(torch.zeros(5, 12)).shape
    torch.Size([5])
"""

from __future__ import annotations

import torch
from torch import nn


class FraudMLP(nn.Module):
    """Two hidden layers with ReLU; returns one fraud logit per row (shape ``[N]``)."""

    def __init__(self, input_width: int, hidden_units: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(input_width, hidden_units),
            nn.ReLU(),
            nn.Linear(hidden_units, hidden_units),
            nn.ReLU(),
            nn.Linear(hidden_units, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # squeeze(-1) rather than squeeze(): a batch of one row must stay shape [1].
        return self.net(x).squeeze(-1)


def build_model(input_width: int, hidden_units: int) -> nn.Module:
    """Build the fraud MLP.

    Args:
        input_width: Width of the preprocessed feature matrix (``Preprocessor.width``).
        hidden_units: Units in each hidden layer (``training.hidden_units`` in app.yaml).

    Returns:
        A module mapping float32 ``[N, input_width]`` to logits ``[N]``.

    Example:
        >>> build_model(4, 8)(torch.ones(2, 4)).shape
        torch.Size([2])
    """
    return FraudMLP(input_width, hidden_units)
