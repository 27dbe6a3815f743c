"""foldwise's pipelines, the engine that runs them, and the command line."""
