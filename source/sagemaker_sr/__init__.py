"""The SageMaker inference container's server."""
