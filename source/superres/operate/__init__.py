"""Operating the kit on AWS: publish release assets, quick-create links, deploy stacks, customer API keys.

One module per concern, all plain boto3 (no AWS CLI); ``superres stack ...`` and
``superres keys ...`` (``superres.cli``) and ``deployment/release.py`` are their command lines.
"""
