#!/usr/bin/env python3
"""Starts moto's S3 server on 127.0.0.1 with authentication on, for the archive tests.

Creates an IAM user allowed s3:*, its access key and the bucket named on the command line,
prints one JSON line {"endpoint", "access_key", "secret_key", "bucket"} on stdout, then
serves until stdin closes. The test stops ("SIGSTOP") and resumes ("SIGCONT") this process
to make the store unreachable and back.
"""
import json
import os
import sys

# The first three requests (the IAM setup below) are not authenticated; every later one is,
# so wrong credentials are refused as by a real store.
os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = "3"

import boto3  # noqa: E402  (after the environment is set)
from moto.server import ThreadedMotoServer  # noqa: E402


def main():
    bucket = sys.argv[1] if len(sys.argv) > 1 else "wal-archive"
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    kw = dict(endpoint_url=endpoint, region_name="us-east-1",
              aws_access_key_id="setup", aws_secret_access_key="setup")
    iam = boto3.client("iam", **kw)
    iam.create_user(UserName="wal")
    key = iam.create_access_key(UserName="wal")["AccessKey"]
    policy = {"Version": "2012-10-17",
              "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    iam.put_user_policy(UserName="wal", PolicyName="s3", PolicyDocument=json.dumps(policy))
    kw.update(aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])
    boto3.client("s3", **kw).create_bucket(Bucket=bucket)
    print(json.dumps({"endpoint": endpoint, "access_key": key["AccessKeyId"],
                      "secret_key": key["SecretAccessKey"], "bucket": bucket}), flush=True)
    sys.stdin.read()
    server.stop()


if __name__ == "__main__":
    main()
