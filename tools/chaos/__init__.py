"""`just chaos`: the whole pipeline under load and under a nemesis, then an independent
checker (see `tools.chaos.run`)."""
