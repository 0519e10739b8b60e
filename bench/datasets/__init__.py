"""What the bench sends: ShareGPT conversations, synthetic prompts, and the agent task set."""
