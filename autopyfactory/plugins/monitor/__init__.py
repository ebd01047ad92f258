"""Monitor plugins: report factory, queues and pilots to an external monitor."""
