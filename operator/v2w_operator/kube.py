"""The Kubernetes API client the handlers use (in-cluster config, else the kubeconfig)."""

from __future__ import annotations

import functools

from kubernetes import client, config


@functools.cache
def api_client() -> client.ApiClient:
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()


def custom_objects() -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client())


def core() -> client.CoreV1Api:
    return client.CoreV1Api(api_client())
