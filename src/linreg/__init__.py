"""Linear regression taught step by step, as Lightning + Hydra experiments.

Kept free of heavy imports so that ``scripts/train.py --help`` stays quick.
"""
