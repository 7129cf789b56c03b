"""MinIO, the local S3: built from source with `go install` at the pinned pseudo-version."""

from __future__ import annotations

import shutil

import boto3
from botocore.client import Config
from botocore.exceptions import ClientError

from lakepulse.platform.components.base import Component, Context, Service, http_ok
from lakepulse.platform.proc import run_logged
from lakepulse.platform.versions import pin
from lakepulse.settings import Settings


def s3_client(settings: Settings):  # type: ignore[no-untyped-def]
    """A boto3 S3 client for the configured endpoint (path-style, as MinIO wants)."""
    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint,
        aws_access_key_id=settings.s3_access_key,
        aws_secret_access_key=settings.s3_secret_key,
        region_name=settings.s3_region,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}),
    )


class MinIO(Component):
    name = "minio"

    def provision(self, ctx: Context) -> None:
        if ctx.is_provisioned(self.name):
            return
        go = shutil.which("go")
        if not go:
            raise RuntimeError("Go >= 1.24 is needed to build MinIO: install it (e.g. apt-get install golang)")
        p = pin(self.name)
        home = ctx.reset(self.name)
        # The checksum database vouches for the module's source (go.sum); GOBIN keeps the binary in our cache.
        run_logged([go, "install", f"{p['module']}@{p['version']}"], ctx.provision_log(self.name),
                   "building MinIO with go install (a few minutes on 2 cores)",
                   env={"GOBIN": str(home / "bin"), "CGO_ENABLED": "0", "GOFLAGS": "-buildvcs=false"})
        ctx.mark_provisioned(self.name)

    def services(self, ctx: Context) -> list[Service]:
        s = ctx.settings
        return [Service(
            name="minio",
            command=[str(ctx.home(self.name) / "bin" / "minio"), "server", str(ctx.data(self.name)),
                     "--address", f"{s.bind_host}:{s.s3_port}",
                     "--console-address", f"{s.bind_host}:{s.s3_console_port}", "--quiet"],
            env={"MINIO_ROOT_USER": s.s3_access_key, "MINIO_ROOT_PASSWORD": s.s3_secret_key,
                 "MINIO_BROWSER_REDIRECT": "off", "MINIO_UPDATE": "off"},
            ready=lambda: http_ok(f"{s.s3_endpoint}/minio/health/ready"),
            url=s.s3_endpoint,
            order=5,
        )]

    def bootstrap(self, ctx: Context) -> None:
        client = s3_client(ctx.settings)
        try:
            client.head_bucket(Bucket=ctx.settings.s3_bucket)
        except ClientError:
            client.create_bucket(Bucket=ctx.settings.s3_bucket)

    def status(self, ctx: Context) -> dict[str, str]:
        try:
            names = [b["Name"] for b in s3_client(ctx.settings).list_buckets()["Buckets"]]
        except Exception:  # noqa: BLE001 - status is best effort
            return {}
        return {"buckets": ",".join(names)}
