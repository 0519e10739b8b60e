"""Ready-made option files for `chatstack bench --config` (quick.yaml, full.yaml)."""
