"""The book's experiments, run on fastnet (``fastnet book ch6 NAME``); see ``ch6``."""

# named here so that the command line lists them without importing the kernels
CH6_EXPERIMENTS = ("optimizer-compare", "weight-init-compare", "batch-norm", "overfit-weight-decay", "overfit-dropout")
