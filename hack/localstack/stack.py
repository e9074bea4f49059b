#!/usr/bin/env python3
"""The local stack: etcd, kube-apiserver, kube-controller-manager, MinIO, the Kubeflow training-operator,
the executor (the kubelet's stand-in) and, for the tests that need them, Kueue and Kubeflow Trainer v2 with
JobSet, on loopback.

Used by the test fixtures (`tests/conftest.py`) and by hand for debugging:

    python hack/localstack/stack.py up        # start everything, print the env to use, wait for Ctrl-C
    python hack/localstack/stack.py up --kueue   # the same with Kueue
    python hack/localstack/stack.py up --trainer # the same with Kubeflow Trainer v2 and JobSet

The binaries come from `hack/localstack/build.sh` (built once from the Go module proxy into a cache
outside the repository). Every server listens on 127.0.0.1 on a free port and keeps its data in one
work folder; nothing is installed system-wide.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
MINIO_USER = "v2w-minio-admin"


def build_binaries() -> Path:
    """Runs build.sh (a no-op when the cache is warm) and returns the binary folder.

    V2W_LOCALSTACK_BIN names a folder of ready binaries instead (nothing is built then).
    """
    if os.environ.get("V2W_LOCALSTACK_BIN"):
        return Path(os.environ["V2W_LOCALSTACK_BIN"])
    out = subprocess.run(["bash", str(HERE / "build.sh")], check=True, stdout=subprocess.PIPE, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


@dataclass
class Server:
    """One child process with its log file."""

    name: str
    argv: list[str]
    log: Path
    env: dict[str, str] | None = None
    proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        handle = self.log.open("ab")
        self.proc = subprocess.Popen(
            self.argv, stdout=handle, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
        )
        handle.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        if not self.alive():
            return
        assert self.proc is not None
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


def wait_until(check, what: str, server: Server, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.alive():
            raise RuntimeError(f"{server.name} exited while waiting for {what}:\n{server.log_tail()}")
        try:
            if check():
                return
        except (OSError, urllib.error.URLError, ssl.SSLError):
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{server.name}: {what} not ready after {timeout:.0f}s:\n{server.log_tail()}")


@dataclass
class MinioServer:
    """A real MinIO (S3) server with a root user made up for this run."""

    bin_dir: Path
    workdir: Path
    port: int = field(default_factory=free_port)
    access_key: str = MINIO_USER
    secret_key: str = field(default_factory=lambda: base64.b32encode(os.urandom(20)).decode().lower())
    region: str = "us-east-1"
    server: Server | None = None
    _buckets: int = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "MinioServer":
        data = self.workdir / "minio-data"
        data.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update(
            MINIO_ROOT_USER=self.access_key,
            MINIO_ROOT_PASSWORD=self.secret_key,
            MINIO_BROWSER="off",
            MINIO_UPDATE="off",
            MINIO_REGION=self.region,
        )
        self.server = Server(
            "minio",
            [str(self.bin_dir / "minio"), "server", str(data), "--address", f"127.0.0.1:{self.port}",
             "--console-address", f"127.0.0.1:{free_port()}", "--quiet"],
            self.workdir / "logs" / "minio.log",
            env,
        )
        self.server.start()
        wait_until(lambda: urllib.request.urlopen(f"{self.endpoint}/minio/health/ready", timeout=2).status == 200,
                   "/minio/health/ready", self.server)
        return self

    def stop(self) -> None:
        if self.server:
            self.server.stop()

    def env(self) -> dict[str, str]:
        """The standard AWS variables that boto3 (and our runtime) read."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": self.region,
        }

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
        )

    def make_bucket(self, prefix: str = "t") -> str:
        self._buckets += 1
        name = f"{prefix}-{os.getpid()}-{self._buckets}-{os.urandom(3).hex()}".lower()
        self.client().create_bucket(Bucket=name)
        return name


@dataclass
class ControlPlane:
    """etcd + kube-apiserver (RBAC, service-account tokens, client-certificate admin) + kube-controller-manager."""

    bin_dir: Path
    workdir: Path
    etcd_port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)
    etcd: Server | None = None
    apiserver: Server | None = None
    controller_manager: Server | None = None
    audit: bool = False  # write every request's metadata to audit.log (load and hot-loop tests read it)

    @property
    def server_url(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "admin.kubeconfig"

    @property
    def pki(self) -> Path:
        return self.workdir / "pki"

    def _make_pki(self) -> None:
        pki = self.pki
        if (pki / "admin.crt").exists():
            return
        pki.mkdir(parents=True, exist_ok=True)
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
                 "-days", "30", "-subj", "/CN=v2w-local-ca", cwd=pki)
        (pki / "serving.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "serving.key", "-out", "serving.csr",
                 "-subj", "/CN=kube-apiserver", cwd=pki)
        _openssl("x509", "-req", "-in", "serving.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", "serving.crt", "-days", "30", "-extfile", "serving.ext", cwd=pki)
        (pki / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "admin.key", "-out", "admin.csr",
                 "-subj", "/O=system:masters/CN=v2w-admin", cwd=pki)
        _openssl("x509", "-req", "-in", "admin.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", "admin.crt", "-days", "30", "-extfile", "client.ext", cwd=pki)
        _openssl("genrsa", "-out", "sa.key", "2048", cwd=pki)
        _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)

    def write_kubeconfig(self, path: Path, user: dict, name: str = "admin") -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "v2w-local", "cluster": {
                "server": self.server_url, "certificate-authority-data": _b64(self.pki / "ca.crt")}}],
            "users": [{"name": name, "user": user}],
            "contexts": [{"name": name, "context": {"cluster": "v2w-local", "user": name, "namespace": "default"}}],
            "current-context": name,
        }
        path.write_text(json.dumps(config, indent=2))
        path.chmod(0o600)
        return path

    def start(self) -> "ControlPlane":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._make_pki()
        self.start_etcd()
        self.start_apiserver()
        self.write_kubeconfig(self.kubeconfig, {
            "client-certificate-data": _b64(self.pki / "admin.crt"),
            "client-key-data": _b64(self.pki / "admin.key"),
        })
        self.start_controller_manager()
        return self

    def start_etcd(self) -> None:
        peer = free_port()
        url = f"http://127.0.0.1:{self.etcd_port}"
        self.etcd = Server("etcd", [
            str(self.bin_dir / "etcd"), "--name", "default", "--data-dir", str(self.workdir / "etcd-data"),
            "--listen-client-urls", url, "--advertise-client-urls", url,
            "--listen-peer-urls", f"http://127.0.0.1:{peer}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-cluster", f"default=http://127.0.0.1:{peer}", "--unsafe-no-fsync=true", "--log-level", "warn",
        ], self.workdir / "logs" / "etcd.log")
        self.etcd.start()
        wait_until(lambda: b"true" in urllib.request.urlopen(f"{url}/health", timeout=2).read(), "/health", self.etcd)

    def start_apiserver(self) -> None:
        pki = self.pki
        self.apiserver = Server("kube-apiserver", [
            str(self.bin_dir / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
            f"--secure-port={self.api_port}", "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--cert-dir={self.workdir / 'apiserver-certs'}",
            f"--tls-cert-file={pki / 'serving.crt'}", f"--tls-private-key-file={pki / 'serving.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            "--authorization-mode=RBAC",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--allow-privileged=true",
            "--disable-admission-plugins=ServiceAccount",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--endpoint-reconciler-type=none",
            *self._audit_flags(),
            "-v=1",
        ], self.workdir / "logs" / "kube-apiserver.log")
        self.apiserver.start()
        ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        wait_until(lambda: urllib.request.urlopen(f"{self.server_url}/readyz", context=ctx, timeout=3).status == 200,
                   "/readyz", self.apiserver, timeout=180)

    @property
    def audit_log(self) -> Path:
        return self.workdir / "logs" / "audit.log"

    def _audit_flags(self) -> list[str]:
        if not self.audit:
            return []
        policy = self.workdir / "audit-policy.yaml"
        # Metadata only (who, verb, object, when) and one line per request when its response is complete.
        policy.write_text(json.dumps({"apiVersion": "audit.k8s.io/v1", "kind": "Policy",
                                      "omitStages": ["RequestReceived"], "rules": [{"level": "Metadata"}]}))
        self.audit_log.parent.mkdir(parents=True, exist_ok=True)
        return [f"--audit-policy-file={policy}", f"--audit-log-path={self.audit_log}", "--audit-log-format=json",
                "--audit-log-mode=blocking", "--audit-log-maxsize=0"]

    def audit_events(self, user: str | None = None) -> list[dict]:
        """The audit log's events, oldest first; only those of `user` when given."""
        if not self.audit_log.exists():
            return []
        events = []
        # Newlines only: str.splitlines() also breaks on U+0085, U+2028 and others, which a refused spec's
        # strings carry into the logged messages unescaped.
        for line in self.audit_log.read_text().split("\n"):
            if not line.strip():
                continue
            event = json.loads(line)
            if user is None or (event.get("user") or {}).get("username") == user:
                events.append(event)
        return events

    def start_controller_manager(self) -> None:
        self.controller_manager = Server("kube-controller-manager", [
            str(self.bin_dir / "kube-controller-manager"),
            f"--kubeconfig={self.kubeconfig}",
            # The job controller makes the Pods of the batch Jobs that JobSet (Trainer v2) creates; Deployments and
            # their ReplicaSets: a Video2WorldPool's workers are one Deployment.
            "--controllers=garbage-collector-controller,namespace-controller,serviceaccount-controller,job-controller,"
            "deployment-controller,replicaset-controller",
            "--leader-elect=false", "--secure-port=0", "--use-service-account-credentials=false",
            "--concurrent-gc-syncs=5", "-v=1",
        ], self.workdir / "logs" / "kube-controller-manager.log")
        self.controller_manager.start()

    def restart_apiserver(self) -> None:
        assert self.apiserver is not None
        self.apiserver.stop()
        self.start_apiserver()

    def kubectl(self, *args: str, input: str | None = None, check: bool = True, kubeconfig: Path | None = None,
                timeout: float = 120) -> subprocess.CompletedProcess:
        argv = [str(self.bin_dir / "kubectl"), f"--kubeconfig={kubeconfig or self.kubeconfig}", *args]
        result = subprocess.run(argv, input=input, text=True, capture_output=True, timeout=timeout)
        if check and result.returncode != 0:
            raise subprocess.CalledProcessError(result.returncode, argv, result.stdout,
                                                result.stderr) from RuntimeError(f"kubectl said: {result.stderr.strip()}")
        return result

    def stop(self) -> None:
        for server in (self.controller_manager, self.apiserver, self.etcd):
            if server:
                server.stop()


def pytorchjob_crd() -> Path:
    """The published PyTorchJob CRD of training-operator 1.9, fetched by build.sh."""
    cache = Path(os.environ.get("V2W_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "video2world")
    return cache / "localstack" / "crds" / "kubeflow.org_pytorchjobs.yaml"


def install_crds(plane: ControlPlane, repo: Path) -> None:
    """The PyTorchJob CRD (about 600 KB: server-side apply) and ours, waited for until Established."""
    plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(pytorchjob_crd()))
    plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(repo / "crds"))
    for crd in ("pytorchjobs.kubeflow.org", "video2worldjobs.video2world.io", "bestofnjobs.video2world.io"):
        wait_established(plane, crd)


def wait_established(plane: ControlPlane, crd: str, timeout: float = 60) -> None:
    """Waits for a CRD's Established condition. (`kubectl wait` fails at once on a CRD that has no status yet.)"""
    deadline = time.monotonic() + timeout
    query = "jsonpath={.status.conditions[?(@.type=='Established')].status}"
    while time.monotonic() < deadline:
        if plane.kubectl("get", "crd", crd, "-o", query, check=False).stdout.strip() == "True":
            return
        time.sleep(0.2)
    raise TimeoutError(f"CRD {crd} not Established after {timeout:.0f}s")


def service_account_kubeconfig(plane: ControlPlane, namespace: str, name: str, path: Path) -> Path:
    """A kubeconfig that authenticates as a ServiceAccount through a real TokenRequest."""
    token = plane.kubectl("create", "token", name, "-n", namespace, "--duration=24h").stdout.strip()
    return plane.write_kubeconfig(path, {"token": token}, name=f"{namespace}-{name}")


# What the training-operator expects of its deployment (cmd/training-operator.v1, pkg/cert): the namespace it
# runs in, the Secret its certificate rotator reads and keeps valid, the webhook configuration whose caBundle the
# rotator fills in, and the folder its certificate rotator checks for the mounted Secret (fixed in its source).
TRAINING_OPERATOR_NS = "kubeflow"
TRAINING_OPERATOR_WEBHOOK_SECRET = "training-operator-webhook-cert"
TRAINING_OPERATOR_WEBHOOK_CONFIG = "validator.training-operator.kubeflow.org"
TRAINING_OPERATOR_MOUNT_CHECK = Path("/tmp/k8s-webhook-server/serving-certs")


def _training_operator_pki(pki: Path) -> None:
    """A CA and a serving certificate the rotator accepts as they are (so it never replaces them): the CA named
    `training-operator-ca`, the server `training-operator.kubeflow.svc`, both valid beyond its 90-day look-ahead;
    the server also for 127.0.0.1, the address the API server calls the webhook on here."""
    if (pki / "tls.crt").exists():
        return
    pki.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "3650",
             "-subj", "/O=training-operator/CN=training-operator-ca", "-addext", "basicConstraints=critical,CA:true",
             "-addext", "keyUsage=critical,keyCertSign,digitalSignature,keyEncipherment",
             "-addext", "subjectAltName=DNS:training-operator-ca", cwd=pki)
    # The rotator parses the CA key as PKCS #1 ("RSA PRIVATE KEY"), not the PKCS #8 that OpenSSL 3 writes.
    _openssl("rsa", "-in", "ca.key", "-out", "ca.key", "-traditional", cwd=pki)
    dns = f"training-operator.{TRAINING_OPERATOR_NS}.svc"
    (pki / "tls.ext").write_text(f"subjectAltName=DNS:{dns},IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
                                 "keyUsage=critical,digitalSignature,keyEncipherment\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "tls.key", "-out", "tls.csr", "-subj", f"/CN={dns}", cwd=pki)
    _openssl("x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", "tls.crt",
             "-days", "3650", "-extfile", "tls.ext", cwd=pki)


def start_training_operator(plane: ControlPlane, workdir: Path, timeout: float = 120) -> Server:
    """The Kubeflow training-operator (v1, PyTorchJob controller only) with its validating webhook, as the
    release manifests deploy it: a webhook certificate Secret in its namespace, the validating webhook
    configuration for PyTorchJobs (here called on https://127.0.0.1:<port>, the API server having no cluster
    network), leader election off. Returns once it is ready (certificates in place, webhook serving)."""
    pki, tmp = workdir / "pki", workdir / "tmp"
    _training_operator_pki(pki)
    # Its webhook server reads the certificate from $TMPDIR/k8s-webhook-server/serving-certs (a private folder
    # per stack); its rotator only checks that the fixed folder has a tls.crt, as a mounted Secret would.
    certs = tmp / "k8s-webhook-server" / "serving-certs"
    certs.mkdir(parents=True, exist_ok=True)
    for name in ("tls.crt", "tls.key"):
        shutil.copyfile(pki / name, certs / name)
    if not (TRAINING_OPERATOR_MOUNT_CHECK / "tls.crt").exists():
        TRAINING_OPERATOR_MOUNT_CHECK.mkdir(parents=True, exist_ok=True)
        # Only its presence is checked; any stack's certificate will do, none is served from here.
        shutil.copyfile(pki / "tls.crt", TRAINING_OPERATOR_MOUNT_CHECK / "tls.crt")
    if plane.kubectl("get", "namespace", TRAINING_OPERATOR_NS, check=False).returncode != 0:
        plane.kubectl("create", "namespace", TRAINING_OPERATOR_NS)
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
              "metadata": {"name": TRAINING_OPERATOR_WEBHOOK_SECRET, "namespace": TRAINING_OPERATOR_NS},
              "data": {name: _b64(pki / name) for name in ("ca.crt", "ca.key", "tls.crt", "tls.key")}}
    port = free_port()
    webhook = {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": TRAINING_OPERATOR_WEBHOOK_CONFIG},
        "webhooks": [{
            "name": "validator.pytorchjob.training-operator.kubeflow.org",
            "admissionReviewVersions": ["v1"], "sideEffects": "None", "failurePolicy": "Fail",
            "clientConfig": {"url": f"https://127.0.0.1:{port}/validate-kubeflow-org-v1-pytorchjob",
                             "caBundle": _b64(pki / "ca.crt")},
            "rules": [{"apiGroups": ["kubeflow.org"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
                       "resources": ["pytorchjobs"]}],
        }],
    }
    plane.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [secret, webhook]}))
    probe = free_port()
    env = {**os.environ, "KUBECONFIG": str(plane.kubeconfig), "MY_POD_NAMESPACE": TRAINING_OPERATOR_NS, "TMPDIR": str(tmp)}
    server = Server("training-operator", [
        str(plane.bin_dir / "training-operator"), "--enable-scheme=pytorchjob", "--leader-elect=false",
        f"--metrics-bind-address=127.0.0.1:{free_port()}", f"--health-probe-bind-address=127.0.0.1:{probe}",
        f"--webhook-server-port={port}", "--zap-log-level=info",
    ], workdir / "logs" / "training-operator.log", env)
    server.start()
    wait_until(lambda: urllib.request.urlopen(f"http://127.0.0.1:{probe}/readyz", timeout=2).status == 200,
               "/readyz (webhook certificates and server)", server, timeout=timeout)
    return server


# Kueue (sigs.k8s.io/kueue) as its release deploys it, but on loopback: its CRDs, its webhooks for its own kinds and
# for PyTorchJobs (the mutating one suspends a PyTorchJob that names a queue, at creation), called on
# https://127.0.0.1:<port> with a certificate of ours (its internal certificate management off), leader election
# off, and PyTorchJobs the only integration (jobs without a queue label are not Kueue's:
# manageJobsWithoutQueueName false). Its webhook configurations are named as its kustomize output names them.
KUEUE_NS = "kueue-system"
KUEUE_WEBHOOK_CONFIGS = ("kueue-mutating-webhook-configuration", "kueue-validating-webhook-configuration")
# Without internal certificate management Kueue reads its metrics certificate from this fixed folder (its
# cmd/kueue/main.go); it is required to exist even though nothing here scrapes the metrics.
KUEUE_METRICS_CERTS = Path("/etc/kueue/metrics/certs")


def kueue_dir() -> Path:
    """Kueue's CRDs and webhook manifests, fetched by build.sh from the Go module (beside the binaries)."""
    cache = Path(os.environ.get("V2W_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "video2world")
    return cache / "localstack" / "kueue"


def wait_for_kueue_build(bin_dir: Path, timeout: float = 1800) -> Path:
    """Kueue's binary: build.sh builds it in the background (a cold build takes many minutes, overlapping the
    tests that do not need it); this waits for that build, through its lock, and reports how it ended."""
    if os.environ.get("V2W_LOCALSTACK_BIN") and (bin_dir / "kueue").exists() and (kueue_dir() / "crds").is_dir():
        return bin_dir / "kueue"  # ready binaries given: nothing is built
    script = HERE / "build.sh"
    out = subprocess.run(["bash", str(script), "--wait-kueue"], check=False, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"Kueue build failed:\n{out.stderr[-4000:]}")
    return Path(out.stdout.strip().splitlines()[-1]) / "kueue"


def _kueue_webhooks(port: int, ca_bundle: str) -> list[dict]:
    """Kueue's webhook configurations from its manifests, for its own kinds and PyTorchJobs only (the other
    frameworks are not enabled: their paths are not served), each called on https://127.0.0.1:<port>."""
    import yaml

    docs = []
    for doc in yaml.safe_load_all((kueue_dir() / "webhooks.yaml").read_text()):
        if not doc:
            continue
        keep = []
        for hook in doc.get("webhooks") or []:
            groups = {g for rule in hook.get("rules") or [] for g in rule.get("apiGroups") or []}
            resources = {r for rule in hook.get("rules") or [] for r in rule.get("resources") or []}
            if "kueue.x-k8s.io" in groups or ("kubeflow.org" in groups and "pytorchjobs" in resources):
                path = hook["clientConfig"]["service"]["path"]
                hook["clientConfig"] = {"url": f"https://127.0.0.1:{port}{path}", "caBundle": ca_bundle}
                keep.append(hook)
        doc["metadata"] = {"name": f"kueue-{doc['metadata']['name']}"}
        doc["webhooks"] = keep
        docs.append(doc)
    assert sorted(d["metadata"]["name"] for d in docs) == sorted(KUEUE_WEBHOOK_CONFIGS), docs
    return docs


def _loopback_pki(pki: Path, name: str) -> None:
    """A CA and a serving certificate for 127.0.0.1 (webhooks; Kueue's metrics endpoint too)."""
    if (pki / "tls.crt").exists():
        return
    pki.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "30",
             "-subj", f"/CN={name}-local-ca", cwd=pki)
    (pki / "tls.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "tls.key", "-out", "tls.csr", "-subj", f"/CN={name}",
             cwd=pki)
    _openssl("x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "tls.crt", "-days", "30", "-extfile", "tls.ext", cwd=pki)


def install_kueue_crds(plane: ControlPlane) -> None:
    plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(kueue_dir() / "crds"))
    for crd in ("workloads", "clusterqueues", "localqueues", "resourceflavors"):
        wait_established(plane, f"{crd}.kueue.x-k8s.io")


def start_kueue(plane: ControlPlane, workdir: Path, timeout: float = 120) -> Server:
    """Kueue's manager (see KUEUE_NS above); returns once its webhooks serve. `stop_kueue` undoes it."""
    binary = wait_for_kueue_build(plane.bin_dir)
    pki = workdir / "pki"
    _loopback_pki(pki, "kueue")
    if not (KUEUE_METRICS_CERTS / "tls.crt").exists():
        KUEUE_METRICS_CERTS.mkdir(parents=True, exist_ok=True)
        for name in ("tls.crt", "tls.key"):
            shutil.copyfile(pki / name, KUEUE_METRICS_CERTS / name)
    install_kueue_crds(plane)
    if plane.kubectl("get", "namespace", KUEUE_NS, check=False).returncode != 0:
        plane.kubectl("create", "namespace", KUEUE_NS)
    port, probe = free_port(), free_port()
    config = {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2", "kind": "Configuration",
        "namespace": KUEUE_NS,
        "health": {"healthProbeBindAddress": f"127.0.0.1:{probe}"},
        "metrics": {"bindAddress": f"127.0.0.1:{free_port()}"},
        "webhook": {"port": port, "host": "127.0.0.1", "certDir": str(pki)},
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": False},
        "manageJobsWithoutQueueName": False,
        "integrations": {"frameworks": ["kubeflow.org/pytorchjob"]},
    }
    config_file = workdir / "config.yaml"
    config_file.write_text(json.dumps(config, indent=1))
    plane.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                         "items": _kueue_webhooks(port, _b64(pki / "ca.crt"))}))
    env = {**os.environ, "KUBECONFIG": str(plane.kubeconfig), "TMPDIR": str(workdir)}
    # The visibility API (an aggregated API server of its own) is not needed here.
    server = Server("kueue", [str(binary), f"--config={config_file}", "--feature-gates=VisibilityOnDemand=false",
                              "--zap-log-level=2"], workdir / "logs" / "kueue.log", env)
    server.start()
    try:
        wait_until(lambda: urllib.request.urlopen(f"http://127.0.0.1:{probe}/readyz", timeout=2).status == 200,
                   "/readyz (webhook server)", server, timeout=timeout)
    except Exception:
        stop_kueue(plane, server)
        raise
    return server


def stop_kueue(plane: ControlPlane, server: Server) -> None:
    """Kueue's webhooks first (they fail every PyTorchJob write while nothing serves them), then Kueue."""
    for name in KUEUE_WEBHOOK_CONFIGS:
        kind = "mutatingwebhookconfiguration" if "mutating" in name else "validatingwebhookconfiguration"
        plane.kubectl("delete", kind, name, "--ignore-not-found", check=False)
    server.stop()


# Kubeflow Trainer v2 (TrainJob, TrainingRuntime, ClusterTrainingRuntime) on JobSet, as their releases deploy them
# but on loopback: their CRDs, their webhooks called on https://127.0.0.1:<port> with a certificate of ours (their
# own certificate management off), leader election off, metrics off. Trainer turns a TrainJob into a JobSet,
# JobSet into batch Jobs, kube-controller-manager's job controller into Pods, and the executor runs those.
# Webhook configurations named as their release manifests name them.
TRAINER_WEBHOOK_CONFIGS = {"validator.trainer.kubeflow.org": "ValidatingWebhookConfiguration",
                           "defaulter.trainer.kubeflow.org": "MutatingWebhookConfiguration"}
JOBSET_WEBHOOK_CONFIGS = {"jobset-validating-webhook-configuration": "ValidatingWebhookConfiguration",
                          "jobset-mutating-webhook-configuration": "MutatingWebhookConfiguration"}
TRAINER_CRDS = ("trainjobs.trainer.kubeflow.org", "trainingruntimes.trainer.kubeflow.org",
                "clustertrainingruntimes.trainer.kubeflow.org", "jobsets.jobset.x-k8s.io")
JOBSET_NAME_LABEL = "jobset.sigs.k8s.io/jobset-name"


def trainer_dir() -> Path:
    """Trainer's and JobSet's CRDs and webhook manifests, fetched by build.sh from the Go modules."""
    return _cache() / "localstack" / "trainer"


def _cache() -> Path:
    return Path(os.environ.get("V2W_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "video2world")


def wait_for_trainer_build(bin_dir: Path, timeout: float = 2400) -> Path:
    """The folder holding `jobset` and `trainer`: build.sh builds them in the background after Kueue; this waits
    for that build, through its lock, and reports how it ended."""
    if os.environ.get("V2W_LOCALSTACK_BIN") and (bin_dir / "trainer").exists() and (trainer_dir() / "crds").is_dir():
        return bin_dir
    out = subprocess.run(["bash", str(HERE / "build.sh"), "--wait-trainer"], check=False, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"Trainer/JobSet build failed:\n{out.stderr[-4000:]}")
    return Path(out.stdout.strip().splitlines()[-1])


def _loopback_webhooks(manifest: Path, names: dict[str, str], port: int, ca_bundle: str,
                       pod_selector: dict | None = None) -> list[dict]:
    """A release's webhook configurations, renamed as its kustomization names them, each hook called on
    https://127.0.0.1:<port><its path>; hooks on Pods limited to `pod_selector` (as the release patches them)."""
    import yaml

    by_kind = {kind: name for name, kind in names.items()}
    docs = []
    for doc in yaml.safe_load_all(manifest.read_text()):
        if not doc:
            continue
        for hook in doc.get("webhooks") or []:
            path = hook["clientConfig"]["service"]["path"]
            hook["clientConfig"] = {"url": f"https://127.0.0.1:{port}{path}", "caBundle": ca_bundle}
            if pod_selector and any("pods" in (rule.get("resources") or []) for rule in hook.get("rules") or []):
                hook["objectSelector"] = pod_selector
        doc["metadata"] = {"name": by_kind[doc["kind"]]}
        docs.append(doc)
    assert sorted(d["metadata"]["name"] for d in docs) == sorted(names), docs
    return docs


@dataclass
class TrainerV2:
    """The JobSet and Trainer managers of one stack."""

    jobset: Server
    trainer: Server

    def log_tail(self, lines: int = 20) -> str:
        return f"jobset:\n{self.jobset.log_tail(lines)}\ntrainer:\n{self.trainer.log_tail(lines)}"


def install_trainer_crds(plane: ControlPlane) -> None:
    plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(trainer_dir() / "crds"))
    for crd in TRAINER_CRDS:
        wait_established(plane, crd)


def start_trainer_v2(plane: ControlPlane, workdir: Path, timeout: float = 120) -> TrainerV2:
    """JobSet's manager, then Trainer's (see TRAINER_WEBHOOK_CONFIGS above); returns once both webhooks serve.
    `stop_trainer_v2` undoes it. No ClusterTrainingRuntime is installed: a test or the operator brings its own."""
    bin_dir = wait_for_trainer_build(plane.bin_dir)
    pki = workdir / "pki"
    _loopback_pki(pki, "trainer-v2")
    install_trainer_crds(plane)
    ca_bundle = _b64(pki / "ca.crt")
    env = {**os.environ, "KUBECONFIG": str(plane.kubeconfig)}
    started: list[Server] = []

    def start(name: str, port: int, config: dict, webhooks: list[dict], extra_env: dict[str, str]) -> Server:
        config_file = workdir / f"{name}-config.yaml"
        config_file.write_text(json.dumps(config, indent=1))
        plane.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": webhooks}))
        probe = config["health"]["healthProbeBindAddress"]
        server = Server(name, [str(bin_dir / name), f"--config={config_file}", "--zap-log-level=2"],
                        workdir / "logs" / f"{name}.log", {**env, **extra_env})
        server.start()
        started.append(server)
        wait_until(lambda: urllib.request.urlopen(f"http://{probe}/readyz", timeout=2).status == 200,
                   "/readyz (webhook server)", server, timeout=timeout)
        return server

    try:
        port = free_port()
        jobset = start("jobset", port, {
            "apiVersion": "config.jobset.x-k8s.io/v1alpha1", "kind": "Configuration",
            "webhook": {"port": port, "host": "127.0.0.1", "certDir": str(pki)},
            "metrics": {"bindAddress": "0"},  # off: nothing scrapes it here
            "health": {"healthProbeBindAddress": f"127.0.0.1:{free_port()}"},
            "leaderElection": {"leaderElect": False},
            "internalCertManagement": {"enable": False},
        }, _loopback_webhooks(trainer_dir() / "jobset-webhooks.yaml", JOBSET_WEBHOOK_CONFIGS, port, ca_bundle,
                              {"matchExpressions": [{"key": JOBSET_NAME_LABEL, "operator": "Exists"}]}), {})
        # Trainer's webhook server reads its certificate from $TMPDIR/k8s-webhook-server/serving-certs (no setting).
        tmp = workdir / "tmp"
        certs = tmp / "k8s-webhook-server" / "serving-certs"
        certs.mkdir(parents=True, exist_ok=True)
        for name in ("tls.crt", "tls.key"):
            shutil.copyfile(pki / name, certs / name)
        port = free_port()
        trainer = start("trainer", port, {
            "apiVersion": "config.trainer.kubeflow.org/v1alpha1", "kind": "Configuration",
            "webhook": {"port": port, "host": "127.0.0.1"},
            "metrics": {"bindAddress": "0", "secureServing": False},
            "health": {"healthProbeBindAddress": f"127.0.0.1:{free_port()}"},
            "leaderElection": {"leaderElect": False},
            "certManagement": {"enable": False},
        }, _loopback_webhooks(trainer_dir() / "trainer-webhooks.yaml", TRAINER_WEBHOOK_CONFIGS, port, ca_bundle),
           {"TMPDIR": str(tmp)})
    except Exception:
        _remove_webhooks(plane, {**TRAINER_WEBHOOK_CONFIGS, **JOBSET_WEBHOOK_CONFIGS})
        for server in started:
            server.stop()
        raise
    return TrainerV2(jobset, trainer)


def _remove_webhooks(plane: ControlPlane, names: dict[str, str]) -> None:
    for name, kind in names.items():
        plane.kubectl("delete", kind.lower(), name, "--ignore-not-found", check=False)


def stop_trainer_v2(plane: ControlPlane, trainer: TrainerV2) -> None:
    """The webhooks first (they fail every TrainJob, JobSet and JobSet Pod write while nothing serves them)."""
    _remove_webhooks(plane, {**TRAINER_WEBHOOK_CONFIGS, **JOBSET_WEBHOOK_CONFIGS})
    trainer.trainer.stop()
    trainer.jobset.stop()


LOCAL_TORCH_RUNTIME = "v2w-torch-local"


def torch_runtime(name: str, backoff_limit: int = 0) -> dict:
    """A ClusterTrainingRuntime with Trainer's torch ML policy, laid out as Trainer's own `torch-distributed` one:
    one replicated Job `node` whose pods run the container `node` (the one the torch plugin gives the PET_* env,
    and the one the executor runs). Pods are not restarted in place (restartPolicy Never) and a pod that exits
    non-zero fails its Job at once, naming its exit code in the Job's Failed condition (a podFailurePolicy); a
    JobSet without a failure policy then fails as a whole, and so does the TrainJob."""
    return {
        "apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "ClusterTrainingRuntime",
        "metadata": {"name": name, "labels": {"trainer.kubeflow.org/framework": "torch"}},
        "spec": {
            "mlPolicy": {"numNodes": 1, "torch": {}},
            "template": {"spec": {"replicatedJobs": [{
                "name": "node",
                "template": {
                    "metadata": {"labels": {"trainer.kubeflow.org/trainjob-ancestor-step": "trainer"}},
                    "spec": {
                        "backoffLimit": backoff_limit,
                        "podFailurePolicy": {"rules": [{"action": "FailJob", "onExitCodes": {
                            "containerName": "node", "operator": "NotIn", "values": [0]}}]},
                        "template": {"spec": {"restartPolicy": "Never", "containers": [
                            {"name": "node", "image": "v2w-local/python"}]}},
                    },
                },
            }]}},
        },
    }


def start_executor(plane: ControlPlane, workdir: Path, pvc_root: Path, slots: int = 0) -> Server:
    """The kubelet's stand-in (hack/localstack/executor.py): runs the training-operator's pods as processes."""
    server = Server("executor", [sys.executable, str(HERE / "executor.py"), "--kubeconfig", str(plane.kubeconfig),
                                 "--workdir", str(workdir), "--pvc-root", str(pvc_root), "--slots", str(slots)],
                    workdir / "logs" / "executor.log")
    server.start()
    return server


def start_operator(kubeconfig: Path, env: dict[str, str], log: Path, namespaces: list[str] | None = None) -> Server:
    """The operator, run exactly as the chart runs it: `kopf run --standalone -m v2w_operator.handlers`."""
    scope = [f"--namespace={ns}" for ns in namespaces] if namespaces else ["--all-namespaces"]
    full_env = {**os.environ, **env, "KUBECONFIG": str(kubeconfig)}
    server = Server("operator", [sys.executable, "-m", "kopf", "run", "--standalone", "--liveness",
                                 f"http://127.0.0.1:{env.get('V2W_LIVENESS_PORT', free_port())}/healthz",
                                 "-m", "v2w_operator.handlers", *scope], log, full_env)
    server.start()
    return server


def chart_rbac(plane: ControlPlane, chart: Path, namespace: str, service_account: str, release: str = "v2w",
               values: dict[str, str] | None = None) -> str:
    """The chart's ServiceAccount and RBAC (cluster mode), exactly as `helm template` renders them (with `values`
    set, e.g. the backend)."""
    sets = [arg for key, value in (values or {}).items() for arg in ("--set", f"{key}={value}")]
    out = subprocess.run(
        [str(plane.bin_dir / "helm"), "template", release, str(chart), "--namespace", namespace,
         "--set", f"serviceAccount.name={service_account}", *sets,
         "--show-only", "templates/serviceaccount.yaml", "--show-only", "templates/rbac.yaml"],
        check=True, capture_output=True, text=True)
    return out.stdout


def install_operator_identity(plane: ControlPlane, chart: Path, namespace: str, service_account: str,
                              kubeconfig: Path, release: str = "v2w", values: dict[str, str] | None = None) -> Path:
    """Namespace, ServiceAccount and RBAC from the chart; returns a kubeconfig that acts as that account."""
    if plane.kubectl("get", "namespace", namespace, check=False).returncode != 0:
        plane.kubectl("create", "namespace", namespace)
    plane.kubectl("apply", "-f", "-", input=chart_rbac(plane, chart, namespace, service_account, release, values))
    return service_account_kubeconfig(plane, namespace, service_account, kubeconfig)


def upload_tree(s3, folder: Path, bucket: str, prefix: str) -> str:
    """Uploads a folder to s3://bucket/prefix/ and returns that URI."""
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            s3.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(folder).as_posix()}")
    return f"s3://{bucket}/{prefix}"


def sample_image(seed: int, size: tuple[int, int] = (160, 96)) -> bytes:
    """A small JPEG scene (sky, ground, a few blocks) that the demo and tests condition on."""
    import io

    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    width, height = size
    image = Image.new("RGB", size)
    draw = ImageDraw.Draw(image)
    sky = tuple(int(v) for v in rng.integers(60, 200, 3))
    for y in range(height):
        t = y / height
        draw.line([(0, y), (width, y)], fill=tuple(int(c * (1 - 0.5 * t)) for c in sky))
    draw.rectangle([0, int(height * 0.65), width, height], fill=tuple(int(v) for v in rng.integers(20, 90, 3)))
    for _ in range(4):
        x0, w, h = int(rng.integers(0, width - 30)), int(rng.integers(12, 40)), int(rng.integers(15, 50))
        y1 = int(height * 0.7)
        draw.rectangle([x0, y1 - h, x0 + w, y1], fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Start the local stack (etcd, kube-apiserver, kube-controller-manager, "
                                                 "MinIO, the PyTorchJob CRD with the training-operator, the executor).")
    sub = parser.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start everything and wait for Ctrl-C")
    up.add_argument("--dir", type=Path, default=None, help="work folder (default: a new temporary folder)")
    up.add_argument("--no-minio", action="store_true")
    up.add_argument("--no-training-operator", action="store_true",
                    help="no CRDs, training-operator or executor: PyTorchJobs stay pending")
    up.add_argument("--kueue", action="store_true", help="also Kueue (its CRDs, webhooks and manager)")
    up.add_argument("--trainer", action="store_true",
                    help=f"also Kubeflow Trainer v2 and JobSet, with the ClusterTrainingRuntime {LOCAL_TORCH_RUNTIME}")
    args = parser.parse_args(argv)
    bin_dir = build_binaries()
    workdir = args.dir or Path(tempfile.mkdtemp(prefix="v2w-localstack-"))
    plane = ControlPlane(bin_dir, workdir).start()
    minio = None if args.no_minio else MinioServer(bin_dir, workdir).start()
    servers = []
    if not args.no_training_operator:
        install_crds(plane, HERE.parents[1])
        servers.append(start_training_operator(plane, workdir / "training-operator"))
        servers.append(start_executor(plane, workdir / "executor", workdir / "pvcs"))
    kueue = start_kueue(plane, workdir / "kueue") if args.kueue and not args.no_training_operator else None
    trainer = start_trainer_v2(plane, workdir / "trainer-v2") if args.trainer and not args.no_training_operator else None
    if trainer:
        plane.kubectl("apply", "-f", "-", input=json.dumps(torch_runtime(LOCAL_TORCH_RUNTIME)))
    lines = [f"export KUBECONFIG={plane.kubeconfig}", f"export PATH={bin_dir}:$PATH"]
    if minio:
        lines += [f"export {k}={v}" for k, v in minio.env().items()]
    env_file = workdir / "env.sh"
    env_file.write_text("\n".join(lines) + "\n")
    env_file.chmod(0o600)  # holds the MinIO root secret made up for this run
    print(f"local stack up; logs in {workdir / 'logs'}; in another shell: source {env_file}", flush=True)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        if kueue:
            stop_kueue(plane, kueue)
        if trainer:
            stop_trainer_v2(plane, trainer)
        for server in reversed(servers):
            server.stop()
        if minio:
            minio.stop()
        plane.stop()
        if args.dir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
