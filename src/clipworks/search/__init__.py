"""Search an image collection: index sources, the faiss index, its SQLite store, the HTTP server."""
