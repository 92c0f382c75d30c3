"""Where services run: the service description, and the Kubernetes and Docker platforms."""
