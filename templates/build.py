"""Generate the three CloudFormation templates from one description.

    python templates/build.py            # (re)write the three *.template.json
    python templates/build.py --check    # exit 1 if a committed template is stale

Why plain dicts rather than troposphere or nested stacks:
- every piece shared by the stacks (API + usage plan + auth, logging/alarms/dashboard,
  VPC, EFS, SageMaker endpoint + autoscaling) is one function of templates/generator/
  (see its __init__ for the modules), so nothing is
  copy-pasted between templates, and the output is plain CloudFormation JSON that the
  AWS console, cfn-lint, checkov and moto read directly;
- nested stacks would need their child templates in S3 at deploy time (one more asset
  per region and a template URL placeholder inside a template) and split outputs and
  conditions across files, for no gain in a kit of three templates;
- troposphere would be one more pinned dependency whose resource classes lag the
  CloudFormation schema; cfn-lint (pinned) checks the generated JSON against the
  current schema anyway.

Assets are referenced through the placeholders the AWS Solutions build substitutes
(serverless-image-handler convention): %%BUCKET_NAME%% (regional asset bucket prefix,
``-<region>`` appended), %%SOLUTION_NAME%% and %%VERSION%%. No template names an image of
the kit's own: the SageMaker stacks run AWS's images (templates/generator/images.py and
inferentia.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Run as a script, or loaded by path (deployment/package.py, the tests): the generator
# package sits beside this file, in the repository's `templates` directory.
REPOSITORY = Path(__file__).resolve().parents[1]
if str(REPOSITORY) not in sys.path:
    sys.path.insert(0, str(REPOSITORY))

from templates.generator.core import EXAMPLE_ASSETS, PLACEHOLDERS, substitute  # noqa: E402 - needs the path above
from templates.generator.stacks import OUTPUTS, render_all  # noqa: E402 - needs the path above

__all__ = ["EXAMPLE_ASSETS", "OUTPUTS", "PLACEHOLDERS", "main", "render_all", "substitute"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a committed template differs")
    args = parser.parse_args(argv)
    stale = []
    for path, text in render_all().items():
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.write_text(text)
    if stale:
        print(f"stale: {', '.join(stale)} (run python templates/build.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
