"""Checks of the names a release is published under, with messages that say what is wrong."""

from __future__ import annotations

import re

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]*[a-z0-9]$")
_SOLUTION = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
#: The longest region suffix a regional bucket gets ("-ap-southeast-1" and the like).
_REGION_SUFFIX = len("-ap-southeast-1")


def check_bucket(name: str, what: str = "bucket") -> str:
    if not (3 <= len(name) <= 63 and _BUCKET.match(name)) or ".." in name:
        raise ValueError(f"{what} {name!r} is not a valid S3 bucket name (3-63 lowercase letters, digits, '-' and '.')")
    return name


def check_build_names(bucket_prefix: str, solution: str, version: str) -> None:
    """The three placeholder values of a build (templates/build.py's %%...%%)."""
    check_bucket(bucket_prefix, "bucket prefix")
    if len(bucket_prefix) + _REGION_SUFFIX > 63:
        raise ValueError(f"bucket prefix {bucket_prefix!r} is too long: <prefix>-<region> must fit 63 characters")
    if not _SOLUTION.match(solution):
        raise ValueError(
            f"solution name {solution!r} must be lowercase letters and digits separated by '.', '_' or '-'"
        )
    if not _VERSION.match(version):
        raise ValueError(f"version {version!r} may hold letters, digits, '.', '_', '+' and '-' only (e.g. v1.0.0)")
