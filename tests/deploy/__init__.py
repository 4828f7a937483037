"""Checks of deploy/: images, compose and Kubernetes manifests, validated offline."""
