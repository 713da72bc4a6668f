"""Every benchmarked method on Flower (flwr), the framework most of the field runs federations with.

The optional extra ``.[flower]`` installs it. From any registered method and a saved partition it builds a
ClientApp that runs the method's client side on one client's data (``fedakd.flower.client``) and a ServerApp
that runs the engine's own round loop with Flower as its link to the clients (``fedakd.flower.server``): the
same hooks, not a second implementation of any method.

- ``fedakd flower simulate ...``: Flower's Simulation Runtime (``run_simulation``) on this machine;
- ``fedakd flower app --out DIR``: a Flower App directory for ``flwr run DIR <superlink>`` on one's own
  SuperLink, with ``fedakd flower shard`` giving each SuperNode its own client's data only.
"""


class FlowerError(RuntimeError):
    """A Flower run cannot go on: the extra is missing, or a node is missing, of another partition, or failing."""


def require_flower() -> None:
    """FlowerError naming the fix, when the optional extra is not installed."""
    import importlib.util

    missing = [name for name in ("flwr", "ray") if importlib.util.find_spec(name) is None]
    if missing:
        raise FlowerError(f"{' and '.join(missing)} not installed: pip install 'fedakd-bench[flower]' (or "
                          f"`pip install -e '.[flower]'` in the checkout) to run methods on Flower")
