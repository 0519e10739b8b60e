"""What is being measured: an OpenAI-compatible endpoint, or chatstack's agent runs."""
