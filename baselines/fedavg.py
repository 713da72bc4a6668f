"""FedAvg (McMahan et al. 2017): the engine's default hooks, unchanged."""

from fedakd.method import Method


class FedAvg(Method):
    """Local SGD, then weights averaged in proportion to client example counts."""
