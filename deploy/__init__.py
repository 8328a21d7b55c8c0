"""Running the dataflows as a service: the entrypoint the image runs (`entrypoint.py`),
the image (`Containerfile`), Kubernetes manifests (`kubernetes/`) and a systemd unit
(`systemd/`). docs/deploy.md says how."""
