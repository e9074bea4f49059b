"""The platform's policy on jobs: which runtime images, ServiceAccounts and http(s) input hosts a job may name.

The rules run in three places: the chart's ValidatingAdmissionPolicy (CEL, at `kubectl apply`), the operator
(before it makes a PyTorchJob) and the runtime (on every connection an http(s) input opens, after DNS).
`charts/video2world-operator/templates/admission-policy.yaml` transcribes the functions here step by step
(the same string steps, checks in the same order, the same messages), and
`tests/chart/test_admission_policy.py` runs one table of cases through both.

A host is judged by what it says, without DNS: an IP literal by the range it falls in, a name by its
spelling (localhost, `*.internal`, metadata names). Only the runtime resolves names, and it refuses to
connect to an address in a refused range unless the platform allows that address or the name itself.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, Field, StringConstraints

from .base import APIModel

# Addresses an input must not reach unless the platform allows them (first match names the range).
REFUSED_NETWORKS: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "this host"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "shared address space"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local, cloud metadata"),
    ("172.16.0.0/12", "private"),
    ("192.168.0.0/16", "private"),
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("fc00::/7", "unique local, cloud metadata"),
    ("fe80::/10", "link-local"),
)
_REFUSED = tuple((ipaddress.ip_network(cidr), cidr, label) for cidr, label in REFUSED_NETWORKS)

# Patterns both Python's `re` and the API server's RE2 read alike (ASCII classes only, no look-arounds).
# The whole URI, lower-cased: an optional user part without '@', then a host name or a bracketed IPv6 address.
HTTP_URI_SHAPE = r"^https?://([a-z0-9._~!$&()*+,;=:%-]*@)?([a-z0-9._-]+|\[[0-9a-f:.]+\])(:[0-9]*)?([/?#].*)?$"
HOST_NAME = r"^([a-z0-9_]([a-z0-9_-]*[a-z0-9_])?\.)*[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?\.?$"
# A last label that is a number: resolvers read `2852039166` or `0xa9.254.169.254` as IPv4 addresses.
NUMERIC_HOST = r"(^|\.)(0x[0-9a-f]*|[0-9]+)\.?$"
REFUSED_NAMES = r"(^|\.)(localhost|internal)\.?$|^(metadata|instance-data)\.?$"
REFUSED_NAMES_TEXT = "localhost, *.localhost, *.internal, metadata, instance-data"

SHAPE_RULE = "must be http(s)://[<user>@]<host>[:<port>][/<path>] with a host name or an IP address"
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def lower_ascii(text: str) -> str:
    """CEL's lowerAscii(): only A-Z change."""
    return text.translate(_ASCII_LOWER)


def is_http(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def http_host(uri: str) -> str | None:
    """The host of an http(s) URI as the admission policy reads it (lower-case, IPv6 without brackets);
    None when the URI does not have the plain shape the policy accepts."""
    lowered = lower_ascii(uri)
    if not re.search(HTTP_URI_SHAPE, lowered):
        return None
    authority = lowered[lowered.index("://") + 3:].split("/")[0].split("?")[0].split("#")[0]
    host_port = authority.split("@")[-1]
    if host_port.startswith("["):
        return host_port[1:host_port.index("]")]
    return host_port.split(":")[0]


def ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a host spells, as the API server's `isIP` reads it: IPv4-mapped IPv6 and zones are not."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and (address.ipv4_mapped is not None or address.scope_id):
        return None
    return address


def _cidr(value: str) -> str:
    # The API server's cidr() wants the prefix length and no host bits; so does this.
    if "/" not in value:
        raise ValueError(f"{value!r} must be a CIDR such as 10.1.0.0/16 (one address: /32 or /128)")
    ipaddress.ip_network(value)
    return value


def _host_pattern(value: str) -> str:
    name = value[2:] if value.startswith("*.") else value
    if not re.search(HOST_NAME, name) or ip_literal(name) is not None:
        raise ValueError(f"{value!r} must be a host name or *.<domain> (addresses go in allowedCIDRs)")
    return value


HostPattern = Annotated[str, StringConstraints(min_length=1, max_length=253, to_lower=True),
                        AfterValidator(_host_pattern)]
CIDR = Annotated[str, StringConstraints(min_length=1, max_length=64), AfterValidator(_cidr)]


class InputHostPolicy(APIModel):
    """Which hosts http(s) inputs may be fetched from, beyond the public internet (the platform's choice)."""

    allowed_hosts: list[HostPattern] = Field(
        default_factory=list,
        description="Host names (or *.<domain>) allowed although their name is refused or they resolve to a refused "
        "address; an allowed name is trusted wherever it resolves.",
    )
    allowed_cidrs: list[CIDR] = Field(
        default_factory=list, alias="allowedCIDRs",
        description="Address ranges (CIDRs; a single address as /32 or /128) allowed although they are in a "
        "refused range (loopback, link-local, private, cloud metadata).",
    )

    def name_allowed(self, host: str) -> bool:
        """The host is one of allowedHosts (a trailing dot ignored)."""
        for pattern in self.allowed_hosts:
            if pattern.startswith("*."):
                suffix = pattern[1:]
                if host.endswith(suffix) or host.endswith(suffix + "."):
                    return True
            elif host in (pattern, pattern + "."):
                return True
        return False

    def address_refusal(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address, shown: str) -> str | None:
        """Why connecting to `address` is refused (None: it is not)."""
        if any(address in ipaddress.ip_network(c) for c in self.allowed_cidrs):
            return None
        for network, cidr, label in _REFUSED:
            if address in network:
                return f"host {shown} is in the refused range {cidr} ({label}): allow it with policy.inputs.allowedCIDRs"
        return None

    def host_refusal(self, host: str) -> str | None:
        """Why a host, as written in a URI, is refused (None: it is not). No DNS: names by their spelling."""
        address = ip_literal(host)
        if address is not None:
            return self.address_refusal(address, host)
        if not re.search(HOST_NAME, host):
            return f"host {host} is neither a host name nor an IP address"
        if re.search(NUMERIC_HOST, host):
            return (f"host {host} ends in a number, which resolvers read as an IPv4 address: write the address in "
                    "dotted form")
        if self.name_allowed(host):
            return None
        if re.search(REFUSED_NAMES, host):
            return f"host {host} is a refused name ({REFUSED_NAMES_TEXT}): allow it with policy.inputs.allowedHosts"
        return None

    def uri_refusal(self, uri: str) -> str | None:
        """Why an input URI is refused (None: it is not); URIs other than http(s) are not this policy's."""
        if not is_http(uri):
            return None
        host = http_host(uri)
        if host is None:
            return SHAPE_RULE
        return self.host_refusal(host)


def image_allowed(image: str, runtime_image: str, prefixes: list[str]) -> bool:
    """The runtime image itself, or an image under one of the prefixes. A prefix ends at a boundary: `reg.io/team`
    allows `reg.io/team/x:1` and `reg.io/team:1`, not `reg.io/team-evil/x`; one ending in '/', ':' or '@' is taken
    as written."""
    if image == runtime_image:
        return True
    for prefix in prefixes:
        if image == prefix or any(image.startswith(prefix + sep) for sep in "/:@"):
            return True
        if prefix.endswith(("/", ":", "@")) and image.startswith(prefix):
            return True
    return False


@dataclass(frozen=True)
class Violation:
    """One field of a job that the policy refuses, and the rule, in the words the admission policy uses."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class JobPolicy(APIModel):
    """The whole policy the operator enforces on a job's spec (the chart's `policy` values)."""

    image_prefixes: list[Annotated[str, StringConstraints(min_length=1, max_length=512)]] = Field(
        default_factory=list,
        description="Image prefixes spec.scheduling.image may name; empty: only the operator's runtime image.",
    )
    service_accounts: list[Annotated[str, StringConstraints(min_length=1, max_length=253)]] = Field(
        default_factory=list,
        description="ServiceAccounts spec.scheduling.serviceAccountName may name besides `default`.",
    )
    inputs: InputHostPolicy = Field(default_factory=InputHostPolicy, description="Hosts of http(s) inputs.")

    def image_violation(self, image: str | None, runtime_image: str) -> Violation | None:
        if image is None or image_allowed(image, runtime_image, self.image_prefixes):
            return None
        allowed = ", ".join(self.image_prefixes) or "none"
        return Violation("spec.scheduling.image",
                         f"image {image} is not allowed: a job may name the runtime image {runtime_image} or an "
                         f"image under policy.images.allowedPrefixes ({allowed})")

    def service_account_violation(self, name: str | None) -> Violation | None:
        if name is None or name == "default" or name in self.service_accounts:
            return None
        allowed = ", ".join(["default", *self.service_accounts])
        return Violation("spec.scheduling.serviceAccountName",
                         f"ServiceAccount {name} is not allowed: a job may name {allowed} "
                         "(policy.serviceAccounts.allowed)")

    def input_violations(self, inputs: list[tuple[str, str]]) -> list[Violation]:
        """`inputs`: (field, URI) pairs, e.g. from `job_inputs`."""
        found = []
        for field, uri in inputs:
            reason = self.inputs.uri_refusal(uri)
            if reason is not None:
                found.append(Violation(field, reason))
        return found

    def violations(self, spec: Any, runtime_image: str) -> list[Violation]:
        """Everything in a job's spec (either kind) that the policy refuses, in the order of the spec."""
        found = [self.image_violation(spec.scheduling.image, runtime_image),
                 self.service_account_violation(spec.scheduling.service_account_name)]
        return [v for v in found if v is not None] + self.input_violations(job_inputs(spec))


def job_inputs(spec: Any) -> list[tuple[str, str]]:
    """Every input URI of a job's spec (either kind) with its field path: the URIs the pods may fetch."""
    found: list[tuple[str, str]] = []
    if getattr(spec, "input", None) is not None:
        found.append(("spec.input.uri", spec.input.uri))
    for i, entry in enumerate(getattr(spec, "batch", None) or []):
        found.append((f"spec.batch[{i}].input", entry.input))
    if getattr(spec, "batch_uri", None):
        found.append(("spec.batchUri", spec.batch_uri))
    best_of_n = getattr(spec, "best_of_n", None)
    if best_of_n is not None and best_of_n.videos_uri:
        found.append(("spec.bestOfN.videosUri", best_of_n.videos_uri))
    return found


__all__ = [
    "REFUSED_NETWORKS",
    "InputHostPolicy",
    "JobPolicy",
    "Violation",
    "http_host",
    "image_allowed",
    "ip_literal",
    "job_inputs",
]
