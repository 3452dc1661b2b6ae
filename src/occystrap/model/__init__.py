"""Value types of the image world: digests, media types, descriptors, manifests, configs."""
