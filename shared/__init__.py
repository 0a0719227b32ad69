"""Code every service shares: settings, logging, the domain, NATS topology, the store."""
