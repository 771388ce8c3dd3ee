"""Training recipes: thin layers over the model-agnostic Trainer, one file each."""
