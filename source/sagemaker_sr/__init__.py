"""The SageMaker host: ``inference``, the code of the GPU and Inferentia model artifacts in AWS's
PyTorch and Neuron inference images."""
