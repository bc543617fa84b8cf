"""Seeds: what a seed may contain, the checked plan, its tar stream, and the host paths a
container may also write. Pure logic on this machine; it imports only the ground."""
