"""Fixtures of the real-client suite: the two servers run.sh started (plain HTTP and HTTPS,
each on its own store), boto3 clients for them in their default configuration, and the AWS
CLI pointed at them. Everything comes from the S3T_* environment run.sh exports."""

import os
import subprocess
import uuid
from dataclasses import dataclass

import boto3
import botocore.config
import pytest


def _env(name):
    v = os.environ.get(name)
    if not v:
        pytest.exit(f"{name} is not set: run this suite through tools/s3test/run.sh DARE_BINARY", 2)
    return v


@dataclass
class Target:
    """One running `dare serve`."""

    scheme: str  # "http" or "https"
    url: str
    store: str
    verify: object  # the CA bundle path over HTTPS, None over HTTP
    kms_key: str  # an enabled customer master key (id) ...
    kms_alias: str  # ... and its alias
    kms_disabled: str  # a disabled one (id)
    access: str
    secret: str

    @property
    def tls(self):
        return self.scheme == "https"

    def client(self, secret=None, access=None, **config):
        """A boto3 S3 client in its default configuration (only retries are turned off where
        a test asks, so an expected error is seen once)."""
        kw = {}
        if config:
            kw["config"] = botocore.config.Config(**config)
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=access or self.access,
            aws_secret_access_key=secret or self.secret,
            region_name="us-east-1",
            verify=self.verify,
            **kw,
        )

    def bucket(self, s3, **kw):
        """A new bucket with a unique name."""
        name = "t-" + uuid.uuid4().hex[:20]
        s3.create_bucket(Bucket=name, **kw)
        return name

    def aws(self, *args, check=True, input=None):
        """The AWS CLI (`aws ARGS --endpoint-url URL`), with the CA in AWS_CA_BUNDLE."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        work = os.environ["S3T_WORK"]
        env.update(
            AWS_ACCESS_KEY_ID=self.access,
            AWS_SECRET_ACCESS_KEY=self.secret,
            AWS_DEFAULT_REGION="us-east-1",
            AWS_CONFIG_FILE=os.path.join(work, "no-aws-config"),
            AWS_SHARED_CREDENTIALS_FILE=os.path.join(work, "no-aws-credentials"),
            AWS_EC2_METADATA_DISABLED="true",
        )
        if self.tls:
            env["AWS_CA_BUNDLE"] = self.verify
        p = subprocess.run(
            ["aws", *args, "--endpoint-url", self.url],
            env=env,
            input=input,
            capture_output=True,
            timeout=600,
        )
        if check and p.returncode != 0:
            raise AssertionError(
                f"aws {' '.join(args)} failed ({p.returncode}): {p.stderr.decode(errors='replace')}"
            )
        return p

    def dare(self, *args):
        """The dare CLI on this server's store."""
        return subprocess.run(
            [os.environ["S3T_DARE"], "--store", self.store, *args],
            capture_output=True,
            timeout=120,
        )


def _target(scheme):
    up = scheme.upper()
    return Target(
        scheme=scheme,
        url=_env(f"S3T_{up}_URL"),
        store=_env(f"S3T_{up}_STORE"),
        verify=_env("S3T_CA") if scheme == "https" else None,
        kms_key=_env(f"S3T_{up}_KMS_KEY"),
        kms_alias=_env(f"S3T_{up}_KMS_ALIAS"),
        kms_disabled=_env(f"S3T_{up}_KMS_DISABLED"),
        access=_env("S3T_ACCESS"),
        secret=_env("S3T_SECRET"),
    )


@pytest.fixture(scope="session", params=["http", "https"])
def t(request):
    """Each test runs against both servers."""
    return _target(request.param)


@pytest.fixture(scope="session")
def https():
    return _target("https")


@pytest.fixture(scope="session")
def http():
    return _target("http")


@pytest.fixture(scope="session")
def s3(t):
    return t.client()


@pytest.fixture
def bucket(t, s3):
    return t.bucket(s3)
