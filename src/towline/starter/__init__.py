"""Starting and following runs: the command line, plan loading, the client API."""
