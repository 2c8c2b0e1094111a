"""Users, roles bound to a node of the organisation tree, and their enforcement."""
