"""The choice lists that the command line, the API and the service all offer, each written once."""

DEVICES = ("auto", "cpu", "cuda")  # where PyTorch trains and ONNX Runtime predicts
