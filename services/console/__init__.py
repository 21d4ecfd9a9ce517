"""console: the support console, a web client of the gateway API for people."""
