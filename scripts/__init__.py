"""Developer scripts (generators, the system packages set-up); not installed with pkube."""
