"""Common infrastructure and contracts of the HAI pump services."""
