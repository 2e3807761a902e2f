"""The SageMaker hosts: the GPU model's code in AWS's PyTorch inference container
(``inference``) and the Inf1 container's server (``neuron``)."""
