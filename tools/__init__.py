"""Development tools of the repository (the docs-site builder). Not part of the anomalyforge package: nothing there imports them."""
