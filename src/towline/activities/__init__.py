"""Everything that touches the world: tools, workspaces, artifacts."""
