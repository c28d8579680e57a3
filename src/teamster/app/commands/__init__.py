"""The CLI's commands beyond `up`, `engine` and `worker`: one module each, registered by `teamster.app.cli`."""
