"""FedAvg + server fine-tuning on the transfer set (FedAKD's steps with lambda = 0).

The honest ablation: does FedAKD's distillation add anything beyond the labels
of the transfer set that it trains on?
"""

from baselines.fedavg import FedAvg
from fedakd.distill import DISTILL_OPTIONS, distill_on_proxy


class FedAvgFT(FedAvg):
    options_schema = dict(DISTILL_OPTIONS)
    needs_proxy = True

    def server_update(self, ctx, uploads):
        distill_on_proxy(ctx, uploads, lam=0.0, temperature=1.0, steps=self.options["distill_steps"],
                         lr=self.options["distill_lr"], batch_size=self.options["distill_batch_size"])
