"""The launcher: config (flags), recipes, cli and runtime at the top; train, evaluate, report, estimate and
forecast below them, each a folder with one job. It builds on models/ and data_provider/, which build on core/."""
