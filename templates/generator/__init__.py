"""The generator of the three CloudFormation templates (``templates/build.py`` is its command).

core           the template, handles (Resource, Parameter, Condition), Fn::Sub, the asset mapping
iam            roles, named policies and the grant_* helpers
parameters     the parameters and conditions every stack has, the allow-listed input buckets
observability  log groups, dashboard, alarms
api            the REST API built from the contract
network        VPC and the models' EFS file system (Lambda stack)
storage        the output bucket, the jobs' table, topic and queues
compute        functions, the EFS model stager, the SageMaker endpoint
images         AWS's PyTorch inference image of the GPU stack, its Region map, the toolkit's settings
inferentia     AWS's Neuron images of the Inferentia stack, their Region map and rules
async_jobs     SageMaker Asynchronous Inference jobs (AsyncJobs)
stacks         the three templates, composed from the pieces
"""
