"""The workbench core: models, samples, engines and evaluation. Never imports the UI."""
