"""The math of RLVR and CLIPO: pure torch functions of tensors and scalars, no model, no config, no I/O.

Aggregation modes (``ops``), group-relative and leave-one-out advantages (``advantages``), KL estimators
(``kl``), the PPO-clip, GSPO and GMPO policy losses (``policy_losses``), CLIPO's head, contrastive losses and
rewards (``contrastive``), the per-micro-batch loss composition (``loss``) and the algorithm registry that
names GRPO / Dr. GRPO / DAPO / GSPO / GMPO / RLOO (``algorithms``). Every formula is written out in ``docs/algorithms.md``.

Layer: the bottom. Imports torch and nothing else of clipo (a test walks the imports to keep it so).
"""
