"""daemon transport: Docker and Podman daemons over the Engine API on a unix socket."""
