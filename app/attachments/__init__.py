"""Files attached to conversations: types from content, text extraction off the event loop, chunks
for full-text search, and the documents the model sees.

Kept free of imports: `pdf_worker` runs inside a worker process that imports only it (and pypdf).
"""
