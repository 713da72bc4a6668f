"""FedAvg + server fine-tuning on the transfer set (FedAKD's steps with lambda = 0).

The honest ablation: does FedAKD's distillation add anything beyond the labels
of the transfer set that it trains on?
"""

from baselines.fedavg import FedAvg
from fedakd.distill import (DISTILL_OPTIONS, GUARD_OPTIONS, distill_on_transfer_set, guard_problems,
                            needs_validation_split)


class FedAvgFT(FedAvg):
    options_schema = {**DISTILL_OPTIONS, **GUARD_OPTIONS}  # the guard: an extension, off by default

    @classmethod
    def check_options(cls, options: dict) -> list[str]:
        return guard_problems(options)

    @classmethod
    def needs_transfer_set(cls, options: dict) -> bool:
        return True

    @classmethod
    def needs_validation_split(cls, options: dict) -> bool:
        return needs_validation_split(options)

    def server_update(self, ctx, uploads, averaged):
        return distill_on_transfer_set(ctx, uploads, averaged, lam=0.0, temperature=1.0,
                                       steps=self.options["distill_steps"], lr=self.options["distill_lr"],
                                       batch_size=self.options["distill_batch_size"], guard=self.options)
