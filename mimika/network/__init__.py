"""2. Network architecture: the registered networks, the trainable model and the config that
travels with its weights, the model-file container, ONNX export, and the ONNX Runtime predictor
that prediction uses without PyTorch. Imports the ground and input preparation."""
