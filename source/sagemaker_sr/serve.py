"""Where SageMaker unpacks a model artifact in every container it runs: the default model
directory of the Inf1 host (``sagemaker_sr.neuron``). The GPU model runs in AWS's PyTorch
inference container instead (``sagemaker_sr.inference``)."""

MODEL_DIR = "/opt/ml/model"
