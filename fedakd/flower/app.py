"""The Flower App's components, as ``flwr run`` loads them (pyproject.toml's [tool.flwr.app.components]):
the job comes from the run's ``run_config`` (fedakd.flower.settings.FlowerJob)."""

from fedakd.flower.client import make_client_app
from fedakd.flower.server import make_server_app

server_app = make_server_app()
client_app = make_client_app()
