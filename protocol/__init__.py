"""The wire protocols chatstack speaks, each defined once: run events, Server-Sent Events and the
OpenAI chat-completions format.

Everything that writes or reads one of them imports it from here: the API, the agent's backend
client, the UI, the bench and the test servers. This package imports nothing else of chatstack.
"""
