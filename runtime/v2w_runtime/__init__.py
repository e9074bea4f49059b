"""Video2World runtime: the GPU program that the PyTorchJob pods run."""
