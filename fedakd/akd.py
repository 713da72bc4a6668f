"""FedAKD: attention model + FedAvg aggregation + knowledge distillation (docs/method-card.md §3).

kd_site: server (default) -- after averaging, the server distils the uploaded
client models into the averaged one on the transfer set (fedakd.distill).
kd_site: client -- each client, after local training, distils its local model
into a fresh copy of the global model on its own data with the same loss and
uploads that copy (no transfer set, twice the local compute). The local pass's
loss is logged as train_loss, the distillation pass's as client_kd_loss.
"""

from __future__ import annotations

from fedakd.distill import (DISTILL_OPTIONS, GUARD_OPTIONS, distill_on_transfer_set, guard_problems,
                            needs_validation_split)
from fedakd.method import Method

class FedAKD(Method):
    options_schema = {
        "lambda": {"type": "number", "minimum": 0, "default": 1.0, "description": "weight of the KD term"},
        "temperature": {"type": "number", "exclusiveMinimum": 0, "default": 2.0, "description": "softmax temperature T"},
        "attention": {"type": "boolean", "default": True, "description": "insert the feature attention layer"},
        "attention_form": {"enum": ["scaled", "residual"], "default": "scaled",
                           "description": "scaled: h = d*a*f (the paper's); residual: h = a*f + f (stabilised)"},
        "kd_site": {"enum": ["server", "client"], "default": "server", "description": "where distillation runs"},
        "teacher_weighting": {"enum": ["uniform", "class_count"], "default": "uniform",
                              "description": "class_count: teacher k weighted on class y by its share of y (extension)"},
        "attention_transfer": {"type": "number", "minimum": 0, "default": 0.0,
                               "description": "beta of beta * mean_k KL(a_k || a_q) (extension; needs attention)"},
        **DISTILL_OPTIONS,
        **GUARD_OPTIONS,  # the validated server step: an extension, off by default
    }

    @classmethod
    def needs_validation_split(cls, options: dict) -> bool:
        return needs_validation_split(options) and options.get("kd_site", "server") == "server"

    @classmethod
    def check_options(cls, options: dict) -> list[str]:
        problems = guard_problems(options)
        if options.get("attention_transfer", 0) > 0 and not options.get("attention", True):
            problems.append("attention_transfer > 0 needs attention: true")
        if options.get("attention_form", "scaled") != "scaled" and not options.get("attention", True):
            problems.append("attention_form applies to attention: true only")
        if options.get("kd_site") == "client" and (
            options.get("attention_transfer", 0) > 0 or options.get("teacher_weighting") == "class_count"
        ):
            problems.append("attention_transfer and teacher_weighting apply to kd_site: server only")
        return problems

    @classmethod
    def needs_transfer_set(cls, options: dict) -> bool:
        return options.get("kd_site", "server") == "server"

    def model_options(self):
        return {"attention": self.options["attention"], "attention_form": self.options["attention_form"]}

    def client_update(self, ctx, client):
        upload = ctx.local_sgd(client)
        if self.options["kd_site"] != "client" or self.options["lambda"] == 0:
            return upload
        from fedakd.engine import predict_logits
        from fedakd.losses import kd_loss
        from fedakd.seeding import LOCAL_CLIENT_KD

        ctx.spare_flat.copy_(upload.weights)
        teacher = predict_logits(ctx.spare, client.x).unsqueeze(0)  # (1, n, C), the local model
        lam, temperature = self.options["lambda"], self.options["temperature"]

        def distil(model, xb, yb, idx):
            return kd_loss(model(xb), teacher[:, idx], yb, lam=lam, temperature=temperature)

        return ctx.local_sgd(client, loss_fn=distil, tag=LOCAL_CLIENT_KD, loss_name="client_kd_loss")

    def server_update(self, ctx, uploads, averaged):
        if self.options["kd_site"] != "server":
            return super().server_update(ctx, uploads, averaged)
        return distill_on_transfer_set(
            ctx, uploads, averaged, lam=self.options["lambda"], temperature=self.options["temperature"],
            steps=self.options["distill_steps"], lr=self.options["distill_lr"],
            batch_size=self.options["distill_batch_size"], teacher_weighting=self.options["teacher_weighting"],
            attention_transfer=self.options["attention_transfer"], guard=self.options,
        )
