"""The Kubernetes API client the handlers use (in-cluster config, else the kubeconfig)."""

from __future__ import annotations

import functools

from kubernetes import client, config


# kopf's sync handlers (settings.execution.max_workers) and the followers' threads share this client.
CONNECTIONS = 32


@functools.cache
def api_client() -> client.ApiClient:
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    configuration = client.Configuration.get_default_copy()
    configuration.connection_pool_maxsize = CONNECTIONS  # one per thread: none opened and dropped per request
    return client.ApiClient(configuration)


def custom_objects() -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client())


def core() -> client.CoreV1Api:
    return client.CoreV1Api(api_client())


def apiextensions() -> client.ApiextensionsV1Api:
    return client.ApiextensionsV1Api(api_client())
