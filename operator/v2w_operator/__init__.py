"""Video2World operator: kopf handlers, the API types and the CRD generator."""
