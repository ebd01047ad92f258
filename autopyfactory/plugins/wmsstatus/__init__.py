"""WMS status plugins: how much work waits in the WMS, per WMS queue."""
