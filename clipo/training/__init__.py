"""Training: the typed config, the RL trainer, the CLIPO head trainer, in-loop evaluation, checkpoints,
the run folder and its metrics, and the distributed helpers.

Layer: above ``clipo.rollout``, ``clipo.models``, ``clipo.data``, ``clipo.rewards`` and ``clipo.core``; below
``clipo.apps``. The trainer receives the model, tokenizer and datasets as objects; turning a spec
(``builtin:…``, a path, a hub name) into an object is the apps' job.
"""
