"""The engine: where it is, the connection, the labels that prove ownership, and this
user's state directory. The only package that talks to the docker SDK; it imports only
the ground (``_errors``, ``_options``)."""
